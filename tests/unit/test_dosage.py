"""Daily doses from dosage instructions: dose x timing, tablets x the product's strength, ranges, and the bounds
that keep a broken or hostile dosage cheap and harmless."""
from __future__ import annotations

import math
import time
from datetime import date

import pytest

from cds_service.evaluate.criteria import dose_above
from cds_service.gather.dosage import DailyDose, daily_doses
from cds_service.gather.facts import extract_drafts, extract_facts
from cds_service.knowledge.rxnorm_table import read_rows
from tests.conftest import REPO

ROWS = read_rows(REPO / "mappings" / "rxnorm" / "product-ingredient.tsv")


def _strength(display: str, unit: str = "MG") -> float:
    return float(display.split(f" {unit}")[0].split()[-1])


@pytest.fixture(scope="module")
def k(knowledge):
    """Codes and names read from the knowledge and the roll-up table (never written here)."""
    statin = knowledge.concepts["simvastatin"].ingredients[0]
    tablet = next(r for r in ROWS if r.ingredients == (statin,) and r.tty == "SCD" and r.dose_form == "Oral Tablet")
    liquid = next(r for r in ROWS if r.ingredients == (statin,) and r.tty == "SCD" and "MG/ML" in r.display)
    combo = next(r for r in ROWS if statin in r.ingredients and len(r.ingredients) == 2 and r.tty == "SCD")
    systems = {name: uris[0] for name, uris in knowledge.systems.items()}
    return {"terms": knowledge.terminology, "statin": statin, "tablet": tablet, "liquid": liquid, "combo": combo,
            "gts": knowledge.terminology.dosing.timing_system, **systems}


def concept(k, row):
    return {"coding": [{"system": k["rxnorm"], "code": row.rxcui}]}


def request(*dosages, kind="MedicationRequest"):
    key = "dosage" if kind == "MedicationStatement" else "dosageInstruction"
    return {"resourceType": kind, "status": "active", key: list(dosages)}


def dosage(dose=None, timing=None, sequence=None, dose_range=None):
    out = {}
    if dose is not None:
        out["doseAndRate"] = [{"doseQuantity": dose}]
    if dose_range is not None:
        out["doseAndRate"] = [{"doseRange": dose_range}]
    if timing is not None:
        out["timing"] = timing
    if sequence is not None:
        out["sequence"] = sequence
    return out


def ucum(k, value, unit):
    return {"value": value, "unit": unit, "system": k["ucum"], "code": unit}


def code(k, abbreviation):
    return {"code": {"coding": [{"system": k["gts"], "code": abbreviation}]}}


def repeat(frequency, period, unit, **more):
    return {"repeat": {"frequency": frequency, "period": period, "periodUnit": unit, **more}}


def doses(k, resource, row=None, ingredients=None):
    row = row or k["tablet"]
    return daily_doses(resource, concept(k, row), ingredients or row.ingredients, k["terms"])


def one(k, resource, row=None):
    return doses(k, resource, row).get(k["statin"])


# --- what is read ---------------------------------------------------------------------------------------------


def test_tablets_times_the_strength_in_the_product_name(k):
    strength = _strength(k["tablet"].display)
    assert one(k, request(dosage(ucum(k, 1, "{tbl}"), code(k, "QD")))) == DailyDose(strength, strength, "mg")
    assert one(k, request(dosage(ucum(k, 2, "{tbl}"), code(k, "BID")))).low == 4 * strength


@pytest.mark.parametrize("unit", [{"unit": "tablet"}, {"unit": "TAB"}, {"unit": "Tablets"},
                                  {"unit": "Tablet", "system": "http://snomed.info/sct", "code": "732936001"}])
def test_units_of_presentation_as_ehrs_send_them(k, unit):
    strength = _strength(k["tablet"].display)
    assert one(k, request(dosage({"value": 1, **unit}, code(k, "QD")))).low == strength


def test_mass_dose_converts_to_milligrams(k):
    in_mg = one(k, request(dosage(ucum(k, 40, "mg"), code(k, "QD"))))
    in_g = one(k, request(dosage(ucum(k, 0.04, "g"), code(k, "QD"))))
    assert in_mg.low == 40 and math.isclose(in_g.low, 40)


@pytest.mark.parametrize(("timing", "per_day"), [
    ({"code": {"text": "QHS"}}, 1), ({"code": {"text": " twice  DAILY "}}, 2),
    (repeat(1, 8, "h"), 3), (repeat(1, 2, "d"), 0.5), (repeat(3, 1, "wk"), 3 / 7),
    ({"repeat": {"period": 1, "periodUnit": "d"}}, 1),  # no frequency: once per period
])
def test_timing_by_repeat_code_text(k, timing, per_day):
    assert math.isclose(one(k, request(dosage(ucum(k, 10, "mg"), timing))).low, 10 * per_day)


def test_volume_times_the_strength_per_millilitre(k):
    strength = _strength(k["liquid"].display, "MG/ML")
    got = one(k, request(dosage(ucum(k, 5, "mL"), code(k, "QD"))), k["liquid"])
    assert math.isclose(got.low, 5 * strength)


def test_combination_tablet_gives_each_ingredient_its_own_strength(k):
    found = doses(k, request(dosage(ucum(k, 1, "{tbl}"), code(k, "QD"))), k["combo"])
    display = k["combo"].display.lower()
    assert set(found) == set(k["combo"].ingredients)
    assert found[k["statin"]].low == float(display.split(k["statin"] + " ")[1].split()[0])


def test_mass_dose_of_a_combination_product_is_not_read(k):
    assert doses(k, request(dosage(ucum(k, 10, "mg"), code(k, "QD"))), k["combo"]) == {}


def test_strength_from_text_when_the_drug_has_no_product_code(k):
    resource = request(dosage(ucum(k, 1, "{tbl}"), code(k, "QD")))
    found = daily_doses(resource, {"text": k["tablet"].display}, (k["statin"],), k["terms"])
    assert found[k["statin"]].low == _strength(k["tablet"].display)


def test_statement_dosage_is_read_like_an_order(k):
    assert one(k, request(dosage(ucum(k, 20, "mg"), code(k, "QD")), kind="MedicationStatement")).low == 20


# --- ranges and several lines ---------------------------------------------------------------------------------


def test_dose_range_and_frequency_max_give_a_range(k):
    ranged = one(k, request(dosage(dose_range={"low": ucum(k, 10, "mg"), "high": ucum(k, 20, "mg")},
                                   timing=code(k, "QD"))))
    assert (ranged.low, ranged.high) == (10, 20) and ranged.text() == "10–20 mg/day"
    by_frequency = one(k, request(dosage(ucum(k, 10, "mg"), repeat(1, 1, "d", frequencyMax=2))))
    assert (by_frequency.low, by_frequency.high) == (10, 20)


def test_lines_of_one_sequence_add_up(k):
    got = one(k, request(dosage(ucum(k, 10, "mg"), code(k, "AM")), dosage(ucum(k, 20, "mg"), code(k, "BED"))))
    assert (got.low, got.high) == (30, 30)


def test_lines_of_different_sequences_may_follow_or_overlap(k):
    got = one(k, request(dosage(ucum(k, 10, "mg"), code(k, "QD"), sequence=1),
                         dosage(ucum(k, 20, "mg"), code(k, "QD"), sequence=2)))
    assert (got.low, got.high) == (20, 30)


# --- unknown is not guessed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", [
    request(),
    request(dosage(timing={"code": {"text": "QD"}})),  # no dose
    request(dosage({"value": 1, "unit": "{tbl}"})),  # no timing
    request(dosage({"value": 1}, {"code": {"text": "QD"}})),  # a dose without a unit
    request(dosage({"value": 1, "unit": "puff"}, {"code": {"text": "QD"}})),  # a unit that is not read
    request(dosage({"value": 1, "unit": "mg"}, {"code": {"text": "as directed"}})),  # timing not known
    request(dosage({"value": 1, "unit": "mg"}, {"repeat": {"frequency": 1}})),  # no period
    request(dosage({"value": 1, "unit": "mg"}, {"code": {"text": "QD"}}), {"text": "then as directed"}),
], ids=["no-dosage", "no-dose", "no-timing", "no-unit", "unread-unit", "unknown-timing", "no-period",
        "one-line-unread"])
def test_a_dosage_that_cannot_be_read_gives_no_dose(k, resource):
    assert doses(k, resource) == {}


@pytest.mark.parametrize(("dose", "timing"), [
    ({"value": 1e300, "unit": "mg"}, {"code": {"text": "QD"}}),
    ({"value": float("nan"), "unit": "mg"}, {"code": {"text": "QD"}}),
    ({"value": -5, "unit": "mg"}, {"code": {"text": "QD"}}),
    ({"value": True, "unit": "mg"}, {"code": {"text": "QD"}}),
    ({"value": 1, "unit": "mg"}, {"repeat": {"frequency": 10 ** 9, "period": 1, "periodUnit": "s"}}),
    ({"value": 1, "unit": "mg"}, {"repeat": {"frequency": 1, "period": 1e-300, "periodUnit": "d"}}),
    ({"value": 1, "unit": "10*999mg"}, {"code": {"text": "QD"}}),
    ({"value": 1, "unit": "m" * 100_000}, {"code": {"text": "QD"}}),
    ({"value": 1, "unit": "mg"}, {"code": {"text": "Q" * 100_000}}),
    ({"value": 1, "unit": ["mg"]}, {"code": "QD"}),
], ids=["huge", "nan", "negative", "boolean", "every-nanosecond", "tiny-period", "huge-exponent", "long-unit",
        "long-timing-text", "wrong-json-types"])
def test_pathological_values_give_no_dose_quickly(k, dose, timing):
    started = time.perf_counter()
    assert doses(k, request(dosage(dose, timing))) == {}
    assert time.perf_counter() - started < 1.0


def test_too_many_lines_or_wrong_shapes_give_no_dose(k):
    line = dosage(ucum(k, 1, "mg"), code(k, "QD"))
    assert doses(k, request(*[line] * 1000)) == {}
    assert doses(k, {"resourceType": "MedicationRequest", "dosageInstruction": "QD"}) == {}
    assert doses(k, {"resourceType": "MedicationRequest", "dosageInstruction": [None, 3, "x"]}) == {}
    assert doses(k, request({"doseAndRate": "x", "timing": []})) == {}
    huge_name = {"text": k["statin"] + " " + "9" * 100_000 + " MG"}
    assert daily_doses(request(dosage(ucum(k, 1, "{tbl}"), code(k, "QD"))), huge_name, (k["statin"],),
                       k["terms"]) == {}


# --- facts and the criterion test -----------------------------------------------------------------------------


def test_medication_uses_and_drafts_carry_their_doses(k):
    resource = {**request(dosage(ucum(k, 40, "mg"), code(k, "QD"))), "id": "a",
                "medicationCodeableConcept": concept(k, k["tablet"])}
    facts = extract_facts({"medication-requests": [resource]}, (), k["terms"], date(2026, 6, 1))
    assert facts.medications[0].doses[k["statin"]].low == 40
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {**resource, "status": "draft"}}]}
    (draft,) = extract_drafts({"draftOrders": bundle}, "order-sign", k["terms"])
    assert draft.doses[k["statin"]].text() == "40 mg/day"


def test_dose_above_is_true_false_or_unknown(k):
    exact, ranged = DailyDose(40, 40, "mg"), DailyDose(10, 40, "mg")
    statin = k["statin"]
    assert dose_above({statin: exact}, (statin,), 20) is True
    assert dose_above({statin: exact}, (statin,), 40) is False  # at the threshold is not above it
    assert dose_above({statin: ranged}, (statin,), 20) is None  # partly above: unknown
    assert dose_above({statin: ranged}, (statin,), 5) is True
    assert dose_above({}, (statin,), 20) is None
