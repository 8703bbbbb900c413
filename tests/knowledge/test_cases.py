"""Every case of every rule, in process and in prefetch mode: the card it must give, or must not."""
from __future__ import annotations

import pytest

from cds_service.case_runner import run_case
from cds_service.knowledge.loader import load_knowledge
from tests.conftest import REPO

_KNOWLEDGE = load_knowledge(REPO)


@pytest.mark.parametrize("case", _KNOWLEDGE.cases, ids=lambda c: f"{c.rule}::{c.name}")
def test_case(case, today):
    result = run_case(_KNOWLEDGE, case, today=today)
    assert result.problem is None, result.problem


def test_every_rule_has_a_positive_and_a_negative_case():
    for rule_id in _KNOWLEDGE.rules:
        expects = {c.expect for c in _KNOWLEDGE.cases if c.rule == rule_id}
        assert expects == {"card", "no-card"}, rule_id


def test_card_suggestions_are_valid_r4_service_requests(today):
    from fhir.resources.R4B.servicerequest import ServiceRequest

    checked = 0
    for case in _KNOWLEDGE.cases:
        result = run_case(_KNOWLEDGE, case, today=today)
        for card in result.cards:
            kinds = {a["type"] for s in card.get("suggestions", ()) for a in s["actions"]}
            if kinds:
                # orders may be taken together; removing the draft is a single choice
                assert card["selectionBehavior"] == ("at-most-one" if kinds == {"delete"} else "any")
            for suggestion in card.get("suggestions", ()):
                assert suggestion["uuid"] and suggestion["label"]
                for action in suggestion["actions"]:
                    assert action["description"]
                    if action["type"] == "delete":
                        assert action["resourceId"].startswith("MedicationRequest/draft-")
                        continue
                    assert action["type"] == "create"
                    resource = ServiceRequest.model_validate(action["resource"])
                    assert resource.intent == "proposal"
                    assert resource.subject.reference == "Patient/case-patient"
                    assert resource.code.coding[0].system == _KNOWLEDGE.systems["loinc"][0]
                    checked += 1
    assert checked >= 3
