"""Override reasons fit the card: over HTTP, a work-up card offers work-up reasons, an interaction card interaction
reasons (cards/services.yaml override_reasons_by_rule_group), and feedback may name any reason a card offered."""
from __future__ import annotations

from datetime import date

import pytest

from cds_service.case_runner import build_request, service_for
from cds_service.render.cards import EXTENSION_KEY, OVERRIDE_SYSTEM


def cards_for_a_case_of(client, knowledge, folder: str) -> tuple[str, list[dict]]:
    case = next(c for c in knowledge.cases if c.expect == "card" and knowledge.rules[c.rule].group == folder)
    service = service_for(knowledge, case)
    response = client.post(f"/cds-services/{service.id}", json=build_request(knowledge, case, service, date.today()))
    assert response.status_code == 200
    cards = [c for c in response.get_json()["cards"] if case.rule in c["extension"][EXTENSION_KEY].get("rules", ())]
    assert cards, f"case {case.name} gave no card of {case.rule}"
    return service.id, cards


def reasons(card: dict) -> list[str]:
    assert all(r["system"] == OVERRIDE_SYSTEM and r["display"] for r in card["overrideReasons"])
    return [r["code"] for r in card["overrideReasons"]]


def test_a_work_up_card_offers_work_up_reasons_only(client, knowledge):
    _, cards = cards_for_a_case_of(client, knowledge, "workup")
    offered = reasons(cards[0])
    assert {"already-ordered-elsewhere", "not-clinically-indicated"} <= set(offered)
    assert "tolerated-before" not in offered and "benefit-outweighs-risk" not in offered


def test_an_interaction_card_offers_interaction_reasons(client, knowledge):
    _, cards = cards_for_a_case_of(client, knowledge, "interactions")
    offered = reasons(cards[0])
    assert {"benefit-outweighs-risk", "tolerated-before"} <= set(offered)
    assert "already-ordered-elsewhere" not in offered


@pytest.mark.parametrize("folder", ["workup", "contributors", "results", "red-flags", "interactions",
                                    "cramp-orders"])
def test_every_card_offers_what_its_rule_folder_lists(client, knowledge, folder):
    service_id, cards = cards_for_a_case_of(client, knowledge, folder)
    assert reasons(cards[0]) == [code for code, _ in knowledge.service(service_id).reasons_for(folder)]


def test_feedback_may_name_a_work_up_reason(client, knowledge):
    service_id, cards = cards_for_a_case_of(client, knowledge, "workup")
    item = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2027-01-15T08:00:00Z",
            "overrideReason": {"reason": {"system": OVERRIDE_SYSTEM, "code": "already-ordered-elsewhere"}}}
    response = client.post(f"/cds-services/{service_id}/feedback", json={"feedback": [item]})
    assert response.status_code == 200
