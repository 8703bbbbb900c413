"""Draft orders that name their drug by reference: where the Medication is found in the request, and which drafts
are left unidentified (never taken as "no drug")."""
from __future__ import annotations

import pytest

from cds_service.gather.draft_medications import draft_references, found_in_request, readable
from cds_service.gather.facts import extract_drafts
from cds_service.knowledge.rxnorm_table import read_rows
from tests.conftest import REPO


@pytest.fixture(scope="module")
def k(knowledge):
    """A product code of the loop diuretics, read from the knowledge (never written here)."""
    loop = knowledge.concepts["loop-diuretics"].ingredients[0]
    product = next(r.rxcui for r in read_rows(REPO / "mappings" / "rxnorm" / "product-ingredient.tsv")
                   if r.ingredients == (loop,) and r.tty != "IN")
    return {"knowledge": knowledge, "loop": loop,
            "code": {"coding": [{"system": knowledge.systems["rxnorm"][0], "code": product}]}}


def medication(k, ident="med-1", **fields):
    return {"resourceType": "Medication", "id": ident, "code": k["code"], **fields}


def draft(ident="draft-1", **fields):
    return {"resourceType": "MedicationRequest", "id": ident, "status": "draft", "intent": "order", **fields}


def by_reference(ref):
    return {"medicationReference": {"reference": ref}}


def context(*entries):
    return {"draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": list(entries)}}


def drafts_of(k, ctx, medications=None, hook="order-sign"):
    return extract_drafts(ctx, hook, k["knowledge"].terminology, medications or {})


# --- where a referenced Medication is found (gather) ---------------------------------------------------------


@pytest.mark.parametrize(("ref", "entry"), [
    ("urn:uuid:5b1c2a9e-8f0d-4c61-9d0e-3a7f1b2c4d5e",
     {"fullUrl": "urn:uuid:5b1c2a9e-8f0d-4c61-9d0e-3a7f1b2c4d5e", "resource": {"resourceType": "Medication"}}),
    ("http://ehr.example/fhir/Medication/m9",
     {"fullUrl": "http://ehr.example/fhir/Medication/m9", "resource": {"resourceType": "Medication"}}),
    ("Medication/m9", {"fullUrl": "http://ehr.example/fhir/Medication/m9", "resource": {"resourceType": "Medication"}}),
    ("Medication/m9", {"resource": {"resourceType": "Medication", "id": "m9"}}),
], ids=["urn-uuid-full-url", "absolute-full-url", "relative-reference-to-absolute-full-url", "type-and-id"])
def test_a_medication_in_the_draft_orders_bundle_is_found(k, ref, entry):
    entry["resource"]["code"] = k["code"]
    ctx = context({"resource": draft(**by_reference(ref))}, entry)
    assert draft_references(ctx) == [ref]
    assert found_in_request([ref], ctx, []) == {ref: entry["resource"]}


def test_a_prefetched_medication_is_found_by_relative_reference_only(k):
    prefetched = [medication(k, "m9")]
    found = found_in_request(["Medication/m9", "http://elsewhere.example/fhir/Medication/m9"], context(), prefetched)
    assert list(found) == ["Medication/m9"]


def test_the_bundle_wins_over_the_prefetch(k):
    in_bundle = medication(k, "m9", status="active")
    ctx = context({"resource": draft(**by_reference("Medication/m9"))}, {"resource": in_bundle})
    assert found_in_request(["Medication/m9"], ctx, [medication(k, "m9")])["Medication/m9"] is in_bundle


def test_only_references_outside_the_draft_are_looked_for(k):
    ctx = context({"resource": draft("a", **by_reference("#own"))},
                  {"resource": draft("b", medicationCodeableConcept=k["code"])},
                  {"resource": draft("c", **by_reference("Medication/x"))},
                  {"resource": draft("d", **by_reference("Medication/x"))},
                  {"resource": "not an object"}, "not an entry")
    assert draft_references(ctx) == ["Medication/x"]
    assert draft_references({"draftOrders": {"resourceType": "Bundle", "entry": 5}}) == []


@pytest.mark.parametrize(("ref", "can"), [("Medication/x", True), ("https://ehr.example/fhir/Medication/x", True),
                                      ("Medication/x/_history/2", False), ("Patient/x", False),
                                      ("urn:uuid:5b1c2a9e-8f0d-4c61-9d0e-3a7f1b2c4d5e", False),
                                      ("Medication/", False), ("a/Medication/x", False)])
def test_only_a_reference_to_a_medication_is_read_from_the_server(ref, can):
    assert readable(ref) is can


# --- which drafts are identified (facts) ---------------------------------------------------------------------


def test_a_draft_whose_medication_was_gathered_is_identified(k):
    (order,) = drafts_of(k, context({"resource": draft(**by_reference("Medication/m9"))}),
                         {"Medication/m9": medication(k, "m9")})
    assert order.identified and "loop-diuretics" in order.concepts and order.ingredients == (k["loop"],)


def test_a_draft_with_a_contained_medication_is_identified(k):
    contained = draft(contained=[medication(k, "own")], **by_reference("#own"))
    (order,) = drafts_of(k, context({"resource": contained}))
    assert order.identified and "loop-diuretics" in order.concepts


@pytest.mark.parametrize(("resource", "gathered"), [
    (draft(**by_reference("Medication/m9")), {}),
    (draft(**by_reference("#absent")), {}),
    (draft(medicationReference={"display": "a drug"}), {}),
    (draft(**by_reference("Medication/m9")), {"Medication/m9": {"resourceType": "Medication", "id": "m9"}}),
    (draft(**by_reference("Medication/m9")),
     {"Medication/m9": {"resourceType": "Medication", "id": "m9", "code": {"coding": [{"display": "x"}]}}}),
], ids=["not-gathered", "not-contained", "no-reference", "medication-without-code", "coding-without-code"])
def test_a_draft_whose_reference_cannot_be_resolved_is_unidentified(k, resource, gathered):
    (order,) = drafts_of(k, context({"resource": resource}), gathered)
    assert not order.identified and order.concepts == frozenset() and order.selected


def test_an_unidentified_draft_is_selected_only_when_order_select_selected_it(k):
    ctx = context({"resource": draft("a", **by_reference("Medication/m9"))})
    ctx["selections"] = ["MedicationRequest/b"]
    (order,) = drafts_of(k, ctx, hook="order-select")
    assert not order.identified and not order.selected


def test_a_draft_with_no_medication_at_all_is_no_draft_order(k):
    # as the CDS Hooks Sandbox sends it: nothing has been ordered yet, so there is nothing to check or report
    assert drafts_of(k, context({"resource": draft()})) == ()


@pytest.mark.parametrize("junk", [
    {"medicationReference": 5}, {"medicationReference": {"reference": 5}}, {"medicationReference": {"reference": []}},
    {"medicationReference": {"reference": "#x"}, "contained": 5}, {"medicationReference": {"reference": "#x"},
                                                                   "contained": [5, {"resourceType": "Medication"}]},
    {"medicationReference": {"reference": "Medication/x"}, "medicationCodeableConcept": None},
], ids=lambda j: str(j)[:40])
def test_junk_in_a_drafts_reference_leaves_it_unidentified_or_unmatched_without_failing(k, junk):
    ctx = context({"resource": draft(**junk)}, {"fullUrl": 5, "resource": {"resourceType": "Medication", "id": 7}},
                  {"fullUrl": "Medication/x", "resource": {"resourceType": "Medication", "code": 5}})
    refs = draft_references(ctx)
    found = found_in_request(refs, ctx, [{"resourceType": "Medication", "id": ["x"]}])
    assert all(not order.identified for order in drafts_of(k, ctx, found))
