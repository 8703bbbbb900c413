"""The pure parts of screening: a finding's fingerprint changes exactly when its triggering data does, a card's
repeat window is its rule's, else its group's, else its indicator's, and a card is known across calls by its key."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from cds_service.evaluate.engine import Finding
from cds_service.knowledge.model import RepeatWindows
from cds_service.render.card import EXTENSION_KEY, Card
from cds_service.screen import _draft_digests, finding_fingerprint


def finding(knowledge, fields: dict[str, str], drafts: tuple[str, ...] = ()) -> Finding:
    return Finding(next(iter(knowledge.rules.values())), fields, (), drafts)


def draft_context(note: str | None = None, meta: str = "1") -> dict:
    resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": "draft-0", "status": "draft",
                                "meta": {"versionId": meta}}
    if note:
        resource["note"] = [{"text": note}]
    return {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": resource}]}}


def test_a_fingerprint_is_stable_and_changes_with_any_value_the_card_shows(knowledge):
    first = finding_fingerprint(finding(knowledge, {"lab.value": "3.1", "lab.date": "2027-01-01"}), {})
    assert first == finding_fingerprint(finding(knowledge, {"lab.date": "2027-01-01", "lab.value": "3.1"}), {})
    assert first != finding_fingerprint(finding(knowledge, {"lab.value": "3.1", "lab.date": "2027-01-02"}), {})
    assert first != finding_fingerprint(finding(knowledge, {"lab.value": "3.0", "lab.date": "2027-01-01"}), {})


def test_a_fingerprint_follows_the_drafts_id_and_content_but_not_its_meta(knowledge):
    def of(context) -> str:
        return finding_fingerprint(finding(knowledge, {"draft.name": "x"}, ("draft-0",)), _draft_digests(context))

    assert of(draft_context()) == of(draft_context(meta="2"))
    assert of(draft_context()) != of(draft_context(note="dose changed"))
    assert of(draft_context()) != finding_fingerprint(finding(knowledge, {"draft.name": "x"}, ("draft-1",)),
                                                      _draft_digests(draft_context()))


def test_a_cards_window_is_its_rules_else_its_groups_else_its_indicators():
    windows = RepeatWindows(MappingProxyType({"info": 1, "warning": 7, "critical": 1}),
                            MappingProxyType({"workup": 3}), MappingProxyType({"rule-a": 14, "rule-b": 2}))
    assert windows.days("warning", None, ("rule-c",)) == 7
    assert windows.days("info", "workup", ("rule-c",)) == 3
    assert windows.days("info", "workup", ("rule-a", "rule-c")) == 14
    assert windows.days("info", "workup", ("rule-a", "rule-b")) == 2


def test_a_card_is_known_by_its_rule_its_group_or_as_the_missing_data_notice():
    frame = ("uuid-1", "A summary", "info", "Detail", {"label": "spasm-cds"})
    assert Card(*frame, rule="rule-a", rules=("rule-a",)).key == "rule-a"
    assert Card(*frame, group="workup", rules=("a", "b")).key == "group:workup"
    assert Card(*frame, missing_data=("observations",)).key == "missing-data"


def test_a_card_becomes_cds_hooks_json_with_its_extension_in_the_order_it_was_always_sent():
    card = Card("uuid-1", "A summary", "warning", "Detail", {"label": "spasm-cds"}, rule="rule-a", rules=("rule-a",),
                rule_versions={"rule-a": 2}, order="draft-0", details={"evidence": "B"},
                suggestions=[{"label": "Remove"}], selection_behavior="at-most-one", override_reasons=[])
    doc = card.to_json()
    assert list(doc) == ["uuid", "summary", "indicator", "detail", "source", "extension", "suggestions",
                         "selectionBehavior", "overrideReasons"]
    assert list(doc["extension"][EXTENSION_KEY].items()) == [
        ("rule", "rule-a"), ("rules", ["rule-a"]), ("ruleVersions", {"rule-a": 2}), ("evidence", "B"),
        ("order", "draft-0")]
    several = Card("uuid-3", "Two findings", "warning", "Detail", {"label": "spasm-cds"}, rules=("a", "b"),
                   order="draft-0", details={"evidence": {"a": "B", "b": "C"}}).to_json()
    assert list(several["extension"][EXTENSION_KEY]) == ["order", "rules", "ruleVersions", "evidence"]
    notice = Card("uuid-2", "Data missing", "info", "Detail", {"label": "spasm-cds"}, missing_data=(),
                  details={"unreadLabs": ["potassium"]}).to_json()
    assert notice["extension"] == {EXTENSION_KEY: {"missingData": [], "unreadLabs": ["potassium"]}}
    assert "overrideReasons" not in notice and "links" not in notice and "suggestions" not in notice
