"""Card ids and actions that cannot reach the wrong patient or order (issue 14), over real HTTP under gunicorn: an
EHR that reuses a hookInstance for another patient gets other card ids, so an override with a snooze on one patient's
card never snoozes the other's; a draft order without an id still gets its warning, but no delete action that would
name `MedicationRequest/`."""
from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import date

import pytest

from cds_service.case_runner import build_request, service_for
from cds_service.render.cards import EXTENSION_KEY
from tests.support.cds_client import call, card_of, overridden, send_feedback, shown_rules

pytestmark = pytest.mark.integration


def warning_case(knowledge):
    """(rule, service id, request) of the first patient-view case whose card is a warning of its own."""
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view"
                and knowledge.rules[c.rule].severity == "warning" and not knowledge.rules[c.rule].card.group)
    service = service_for(knowledge, case)
    return case.rule, service.id, build_request(knowledge, case, service, date.today())


def for_patient(body: dict, patient: str) -> dict:
    """The same chart, sent for another patient id (its resources' subjects rewritten)."""
    old = body["context"]["patientId"]
    text = json.dumps(body).replace(f'"Patient/{old}"', f'"Patient/{patient}"')
    changed = json.loads(text)
    changed["context"]["patientId"] = patient
    return changed


def test_a_reused_hook_instance_gives_each_patient_its_own_card_ids_and_snoozes(service_server, knowledge):
    rule, service_id, body = warning_case(knowledge)
    reused = str(uuid.uuid4())
    first, second = (for_patient(body, f"reuse-{tag}-{uuid.uuid4().hex[:8]}") for tag in ("a", "b"))
    card_a = card_of(call(service_server.url, service_id, first, hook_instance=reused), rule)
    card_b = card_of(call(service_server.url, service_id, second, hook_instance=reused), rule)
    assert card_a["uuid"] != card_b["uuid"]

    # the clinician on the second patient's chart snoozes the card
    assert send_feedback(service_server.url, service_id, overridden(card_b["uuid"], time.time(), "snooze-30d"))[0] \
        == 200
    assert rule not in shown_rules(call(service_server.url, service_id, second))
    assert rule in shown_rules(call(service_server.url, service_id, first))  # the first patient is untouched


def order_sign_case(knowledge):
    """(service id, request) of an order-sign case whose card offers to remove the draft."""
    for case in knowledge.cases:
        rule = knowledge.rules[case.rule]
        if case.expect == "card" and case.hook == "order-sign" and rule.card.suggest_remove_draft:
            service = service_for(knowledge, case)
            return case.rule, service.id, build_request(knowledge, case, service, date.today())
    raise AssertionError("no order-sign case with a removal suggestion")


def test_a_draft_without_an_id_gets_its_warning_but_no_delete_action(service_server, knowledge):
    rule, service_id, body = order_sign_case(knowledge)
    with_id = call(service_server.url, service_id, body)
    actions = [a for c in with_id for s in c.get("suggestions", ()) for a in s.get("actions", ())
               if a["type"] == "delete"]
    assert actions and all(a["resourceId"] != "MedicationRequest/" for a in actions)

    no_id = copy.deepcopy(body)
    for entry in no_id["context"]["draftOrders"]["entry"]:
        entry["resource"].pop("id", None)
    cards = call(service_server.url, service_id, no_id)
    assert rule in shown_rules(cards)
    deletes = [a for c in cards for s in c.get("suggestions", ()) for a in s.get("actions", ())
               if a["type"] == "delete"]
    assert deletes == []
    assert all(EXTENSION_KEY in c["extension"] for c in cards)
