"""The pure parts of screening: a finding's fingerprint changes exactly when its triggering data does, a card's
repeat window is its rule's, else its group's, else its indicator's, and a card is known across calls by its key."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from cds_service.evaluate.engine import Finding
from cds_service.knowledge.model import RepeatWindows
from cds_service.render.cards import EXTENSION_KEY
from cds_service.screen import _draft_digests, card_key, finding_fingerprint


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
    assert card_key({"extension": {EXTENSION_KEY: {"rule": "rule-a", "rules": ["rule-a"]}}}) == "rule-a"
    assert card_key({"extension": {EXTENSION_KEY: {"group": "workup", "rules": ["a", "b"]}}}) == "group:workup"
    assert card_key({"extension": {EXTENSION_KEY: {"missingData": ["observations"]}}}) == "missing-data"
