"""Prefetch: {{token}} rendering from the hook context and user, and what the EHR sent under each key."""
from __future__ import annotations

from datetime import date
from types import MappingProxyType

import pytest

from cds_service.gather.prefetch import PrefetchState, classify, render_template
from cds_service.hook_request import HookCall
from cds_service.knowledge.templates import unknown_tokens

PATIENT = {"resourceType": "Patient", "id": "p1"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}


def call(context: dict | None = None, user_id: str = "Practitioner/abc") -> HookCall:
    context = {"patientId": "p1", "userId": user_id, **(context or {})}
    return HookCall(hook="patient-view", hook_instance="i1", patient_id=context["patientId"], user_id=user_id,
                    context=MappingProxyType(context), prefetch=MappingProxyType({}), fhir_server=None,
                    access_token=None, extension=MappingProxyType({}))


@pytest.mark.parametrize(("template", "hook_call", "rendered"), [
    ("Patient/{{context.patientId}}", call(), "Patient/p1"),
    ("Observation?patient={{ context.patientId }}&encounter={{context.encounterId}}",
     call({"encounterId": "e9"}), "Observation?patient=p1&encounter=e9"),
    ("Practitioner/{{userPractitionerId}}", call(), "Practitioner/abc"),
    ("PractitionerRole/{{userPractitionerRoleId}}", call(user_id="PractitionerRole/r7"), "PractitionerRole/r7"),
    ("Patient/{{userPatientId}}", call(user_id="Patient/p1"), "Patient/p1"),
    ("Observation?_count={{context.limit}}", call({"limit": 5}), "Observation?_count=5"),
    ("metadata", call(), "metadata"),
], ids=["context-token", "tokens-with-spaces", "user-practitioner", "user-practitioner-role", "user-patient",
        "integer-context-value", "no-tokens"])
def test_template_tokens_are_filled(template, hook_call, rendered):
    assert render_template(template, hook_call) == rendered


@pytest.mark.parametrize(("template", "hook_call"), [
    ("Encounter/{{context.encounterId}}", call()),
    ("Encounter/{{context.encounterId}}", call({"encounterId": ""})),
    ("MedicationRequest?_id={{context.selections}}", call({"selections": ["MedicationRequest/m1"]})),
    ("Bundle/{{context.draftOrders}}", call({"draftOrders": {"resourceType": "Bundle"}})),
    ("Practitioner/{{userPractitionerId}}", call(user_id="PractitionerRole/r7")),
    ("Patient/{{context.patientId}}/{{whoever}}", call()),
    ("Observation?flag={{context.flag}}", call({"flag": True})),
], ids=["absent-context-value", "empty-context-value", "list-context-value", "object-context-value",
        "user-of-another-type", "unknown-token", "boolean-context-value"])
def test_template_with_a_token_that_has_no_value_renders_none(template, hook_call):
    assert render_template(template, hook_call) is None


def searchset(*resources: dict, outcome: dict | None = None) -> dict:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    if outcome:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


OBSERVATIONS = [{"resourceType": "Observation", "id": f"o{i}", "status": "final"} for i in range(2)]


@pytest.mark.parametrize(("prefetch", "state", "resources"), [
    ({"k": PATIENT}, PrefetchState.USABLE, [PATIENT]),
    ({"k": searchset(*OBSERVATIONS)}, PrefetchState.USABLE, OBSERVATIONS),
    ({"k": searchset(*OBSERVATIONS, outcome=OUTCOME)}, PrefetchState.USABLE, OBSERVATIONS),
    ({"k": searchset()}, PrefetchState.USABLE, []),
    ({"k": {"resourceType": "Bundle", "type": "searchset"}}, PrefetchState.USABLE, []),
    ({"k": None}, PrefetchState.EMPTY, []),
    ({"k": OUTCOME}, PrefetchState.OPERATION_OUTCOME, []),
    ({"other": PATIENT}, PrefetchState.ABSENT, []),
    ({}, PrefetchState.ABSENT, []),
], ids=["one-resource", "searchset", "searchset-skips-outcome-entry", "searchset-no-matches", "bundle-without-entry",
        "null-means-empty", "operation-outcome", "key-absent", "no-prefetch"])
def test_prefetch_value_is_classified(prefetch, state, resources):
    assert classify(prefetch, "k") == (state, resources)



@pytest.mark.parametrize(("token", "rendered"), [
    ("{{today()}}", "2026-03-31"), ("{{ today() }}", "2026-03-31"), ("{{today() - 90 days}}", "2025-12-31"),
    ("{{today() - 3 weeks}}", "2026-03-10"), ("{{today() - 1 month}}", "2026-02-28"),
    ("{{today() + 2 years}}", "2028-03-31"), ("{{today() - 1 year}}", "2025-03-31")])
def test_date_tokens_are_filled_as_fhir_dates(token, rendered):
    call = HookCall("patient-view", "h", "p1", "Practitioner/u1", MappingProxyType({"patientId": "p1"}),
                    MappingProxyType({}), None, None, MappingProxyType({}))
    assert render_template(f"Observation?date=ge{token}", call, date(2026, 3, 31)) == f"Observation?date=ge{rendered}"
    assert unknown_tokens(token) == []


@pytest.mark.parametrize("token", ["{{today}}", "{{today() - 90 fortnights}}", "{{context.foo}}", "{{now()}}",
                                   "{{patientId}}"])
def test_a_token_the_service_cannot_fill_leaves_the_query_unrendered_and_is_named(token):
    call = HookCall("patient-view", "h", "p1", "Practitioner/u1", MappingProxyType({"patientId": "p1"}),
                    MappingProxyType({}), None, None, MappingProxyType({}))
    assert render_template(f"Observation?x={token}", call, date(2026, 3, 31)) is None  # never sent half-filled
    assert unknown_tokens(f"Observation?patient={{{{context.patientId}}}}&x={token}") == [token]
