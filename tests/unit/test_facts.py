"""extract_facts on hand-built resources: which medications, results, conditions and demographics count, and how."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.gather.facts import LabResult, extract_facts, flag_of, lab_results
from cds_service.knowledge.rxnorm_table import read_rows
from tests.conftest import REPO

TODAY = date(2026, 6, 15)
FAKE_SYSTEM = "http://example.org/not-a-code-system"


@pytest.fixture(scope="module")
def k(knowledge):
    """The codes and names these tests need, read from the knowledge (never written here)."""
    loop = knowledge.concepts["loop-diuretics"].ingredients[0]
    product = next(r.rxcui for r in read_rows(REPO / "mappings" / "rxnorm" / "product-ingredient.tsv")
                   if r.ingredients == (loop,) and r.tty != "IN")
    unknown_code = "99999999"
    assert unknown_code not in knowledge.product_ingredients
    systems = {name: uris[0] for name, uris in knowledge.systems.items()}
    return {"knowledge": knowledge, "loop": loop, "product": product, "unknown_code": unknown_code,
            "thiazide": knowledge.concepts["thiazide-diuretics"].ingredients[0], **systems,
            "loinc_alt": knowledge.systems["loinc"][1]}


def facts(k, unknown=(), **resources):
    return extract_facts(resources, unknown, k["knowledge"].terminology, TODAY)


def rx(k, code, text=None):
    concept = {"coding": [{"system": k["rxnorm"], "code": code}]}
    if text:
        concept["text"] = text
    return concept


def med_request(status="active", kind="MedicationRequest", **fields):
    return {"resourceType": kind, "id": "m", "status": status, "subject": {"reference": "Patient/p"}, **fields}


# --- medications ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "on-hold"])
def test_current_medication_request_rolls_up_to_its_concept(k, status):
    (use,) = facts(k, **{"medication-requests": [
        med_request(status, medicationCodeableConcept=rx(k, k["product"]))]}).medications
    assert "loop-diuretics" in use.concepts
    assert use.ingredients == (k["loop"],)


@pytest.mark.parametrize("status", ["stopped", "completed", "entered-in-error", "draft", "cancelled"])
def test_medication_request_that_is_not_current_is_ignored(k, status):
    requests = [med_request(status, medicationCodeableConcept=rx(k, k["product"]))]
    assert facts(k, **{"medication-requests": requests}).medications == ()


def test_active_medication_statement_counts(k):
    statement = med_request("active", "MedicationStatement", medicationCodeableConcept=rx(k, k["product"]))
    (use,) = facts(k, **{"medication-statements": [statement]}).medications
    assert "loop-diuretics" in use.concepts


@pytest.mark.parametrize("how", ["codeable-concept", "contained-medication", "referenced-medication"])
def test_medication_code_is_found_wherever_the_request_puts_it(k, how):
    medication = {"resourceType": "Medication", "id": "drug-1", "code": rx(k, k["product"])}
    if how == "codeable-concept":
        resources = [med_request(medicationCodeableConcept=rx(k, k["product"]))]
    elif how == "contained-medication":
        resources = [med_request(contained=[medication], medicationReference={"reference": "#drug-1"})]
    else:
        resources = [med_request(medicationReference={"reference": "Medication/drug-1"}), medication]
    (use,) = facts(k, **{"medication-requests": resources}).medications
    assert "loop-diuretics" in use.concepts


def test_reference_to_a_medication_that_was_not_sent_matches_nothing(k):
    request = med_request(medicationReference={"reference": "Medication/not-sent"})
    assert facts(k, **{"medication-requests": [request]}).medications == ()


def test_code_missing_from_the_table_falls_back_to_the_ingredient_name_in_text(k):
    concept = rx(k, k["unknown_code"], text=f"{k['loop'].capitalize()} oral tablet")
    (use,) = facts(k, **{"medication-requests": [med_request(medicationCodeableConcept=concept)]}).medications
    assert "loop-diuretics" in use.concepts
    assert use.ingredients == (k["loop"],)


def test_known_code_wins_over_a_different_name_in_text(k):
    concept = rx(k, k["product"], text=f"{k['thiazide']} tablet")
    (use,) = facts(k, **{"medication-requests": [med_request(medicationCodeableConcept=concept)]}).medications
    assert use.ingredients == (k["loop"],)
    assert "thiazide-diuretics" not in use.concepts


def test_unknown_drug_is_kept_but_matches_no_concept(k):
    concept = rx(k, k["unknown_code"], text="Examplinol oral tablet")
    (use,) = facts(k, **{"medication-requests": [med_request(medicationCodeableConcept=concept)]}).medications
    assert use.concepts == frozenset() and use.ingredients == ()
    assert use.display == "Examplinol oral tablet"


# --- observations --------------------------------------------------------------------------------------------


def lab_code(k, concept_id, system="loinc"):
    code = k["knowledge"].concepts[concept_id].codes["loinc"][0]
    return {"coding": [{"system": k[system], "code": code}]}


def observation(k, concept_id, value, unit, when="2026-06-01", status="final", ucum=True, **fields):
    quantity = {"value": value, "unit": unit}
    if ucum:
        quantity.update(system=k["ucum"], code=unit)
    return {"resourceType": "Observation", "status": status, "code": lab_code(k, concept_id),
            "effectiveDateTime": f"{when}T08:00:00Z", "valueQuantity": quantity, **fields}


def magnesium_mg_dl(k, mmol_l: float) -> float:
    return mmol_l * k["knowledge"].concepts["magnesium"].lab.molar_mass_g_per_mol / 10


def test_the_newest_result_is_the_fact_and_every_result_is_listed_newest_first(k):
    older = observation(k, "potassium", 3.1, "mmol/L", when="2026-01-10")
    newer = observation(k, "potassium", 4.2, "mmol/L", when="2026-05-20")
    for order in ([older, newer], [newer, older]):
        assert facts(k, observations=order).labs["potassium"].when == date(2026, 5, 20)
        every = lab_results(order, k["knowledge"].terminology)["potassium"]
        assert [r.when for r in every] == [date(2026, 5, 20), date(2026, 1, 10)]


def test_a_newest_result_in_an_unreadable_unit_decides_and_is_present_with_an_unknown_value(k):
    older = observation(k, "potassium", 3.1, "mmol/L", when="2026-01-10")
    newer = observation(k, "potassium", 4.2, "furlong", when="2026-05-20")
    for order in ([newer, older], [older, newer]):
        found = facts(k, observations=order)
        assert "potassium" not in found.labs  # the older value is not passed off as the current one
        assert found.unread_labs["potassium"].when == date(2026, 5, 20)
        assert found.unread_labs["potassium"].unit == "furlong"


def test_a_newest_result_without_a_number_gives_way_to_the_one_before(k):
    older = observation(k, "potassium", 3.1, "mmol/L", when="2026-01-10")
    newer = dict(observation(k, "potassium", 4.2, "mmol/L", when="2026-05-20"),
                 valueQuantity={"value": "see note", "unit": "mmol/L"})
    found = facts(k, observations=[newer, older])
    assert found.labs["potassium"].shown_value == "3.1" and not found.unread_labs


def test_results_of_one_day_are_ordered_by_their_time(k):
    morning = observation(k, "potassium", 2.3, "mmol/L", when="2026-05-20")
    evening = dict(observation(k, "potassium", 4.0, "mmol/L", when="2026-05-20"),
                   effectiveDateTime="2026-05-20T20:00:00Z")
    for order in ([morning, evening], [evening, morning]):
        assert facts(k, observations=order).labs["potassium"].shown_value == "4.0"
        every = lab_results(order, k["knowledge"].terminology)["potassium"]
        assert [r.shown_value for r in every] == ["4.0", "2.3"]


def test_same_time_results_prefer_the_concepts_first_code(k):
    codes = k["knowledge"].concepts["potassium"].codes["loinc"]
    first = observation(k, "potassium", 4.4, "mmol/L")
    second = dict(first, code={"coding": [{"system": k["loinc"], "code": codes[1]}]},
                  valueQuantity=dict(first["valueQuantity"], value=3.0))
    for order in ([first, second], [second, first]):
        assert facts(k, observations=order).labs["potassium"].shown_value == "4.4"


def test_a_unit_the_analyte_does_not_accept_is_not_compared(k):
    spec = k["knowledge"].concepts["hba1c"].lab
    assert spec.accepted_units, "HbA1c must list the units it accepts"
    ratio = observation(k, "hba1c", 0.065, "1")  # a plain fraction would convert to % by UCUM; not accepted
    found = facts(k, observations=[ratio])
    assert "hba1c" not in found.labs and "hba1c" in found.unread_labs
    percent = observation(k, "hba1c", 6.8, spec.accepted_units[0])
    assert facts(k, observations=[percent]).labs["hba1c"].value == 6.8


def test_an_alternate_unit_converts_by_its_line_not_by_a_ucum_ratio(k):
    (line,) = [a for a in k["knowledge"].concepts["hba1c"].lab.alternate_units if a.unit == "mmol/mol"]
    rng = {"high": {"value": 38, "unit": "mmol/mol"}}
    ifcc = observation(k, "hba1c", 48, "mmol/mol", referenceRange=[rng])
    result = facts(k, observations=[ifcc]).labs["hba1c"]
    assert result.value == pytest.approx(line.scale * 48 + line.offset)
    assert result.value == pytest.approx(6.54, abs=0.01)  # 48 mmol/mol is the 6.5 % diagnostic threshold
    assert result.high == pytest.approx(line.scale * 38 + line.offset)
    assert (result.shown_value, result.shown_unit) == ("48", "mmol/mol")


@pytest.mark.parametrize("unit", ["mU/L", "uIU/mL", "µIU/mL", "μIU/mL", "mIU/L", "uU/mL", " mU/L ", "ulU/mL"])
def test_tsh_units_that_mean_milli_international_units_per_litre_read_as_they_are(k, unit):
    tsh = observation(k, "tsh", 12, unit, ucum=False)
    assert facts(k, observations=[tsh]).labs["tsh"].value == pytest.approx(12)


@pytest.mark.parametrize("unit", ["MU/L", "IU/L", "U/L"])
def test_tsh_in_a_unit_ucum_reads_otherwise_is_present_but_unread(k, unit):
    found = facts(k, observations=[observation(k, "tsh", 12, unit)])
    assert "tsh" not in found.labs and "tsh" in found.unread_labs


@pytest.mark.parametrize(("concept_id", "code", "value", "unit", "canonical"), [
    ("free-t4", "14920-3", 10.3, "pmol/L", 10.3e-12 * 776.87 * 1e9 / 10),  # pmol/L x g/mol -> ng/dL
    ("albumin", "61151-7", 3.1, "g/dL", 3.1),
    ("albumin", "61152-5", 31, "g/L", 3.1),
    ("vitamin-d-25oh", "49054-0", 14, "ng/mL", 14),
    ("creatinine", None, 221, "μmol/L", 221 * 113.12 / 10000),
    ("creatinine", None, 221, "µmol/L", 221 * 113.12 / 10000),
    ("egfr", None, 42, "mL/min/1.73 m^2", 42),
    ("egfr", None, 42, "ml/min/1.73m2", 42),
    ("egfr", None, 42, "mL/min/1.73 sq m", 42),
    ("egfr", None, 42, "mL/min/{1.73_m2}", 42),
    ("potassium", None, 3.1, "MMOL/L", 3.1),
    ("potassium", None, 3.1, "mEq/L", 3.1),
], ids=lambda v: str(v))
def test_codes_and_unit_spellings_from_real_charts_are_read(k, concept_id, code, value, unit, canonical):
    obs = observation(k, concept_id, value, unit, ucum=False)
    if code is not None:
        assert code in k["knowledge"].concepts[concept_id].codes["loinc"]
        obs["code"] = {"coding": [{"system": k["loinc"], "code": code}]}
    assert facts(k, observations=[obs]).labs[concept_id].value == pytest.approx(canonical, rel=1e-3)


def test_a_calcium_whose_same_day_albumin_is_unread_has_an_unknown_correction(k):
    calcium = observation(k, "calcium-total", 8.0, "mg/dL")
    albumin = observation(k, "albumin", 2.5, "furlong")
    result = facts(k, observations=[calcium, albumin]).labs["calcium-total"]
    assert result.correction_unknown and result.corrected is None


def test_annotations_in_units_are_shown_without_braces(k):
    egfr = observation(k, "egfr", 48, "mL/min/{1.73_m2}")
    result = facts(k, observations=[egfr]).labs["egfr"]
    assert result.shown_unit == "mL/min/1.73 m2" and "{" not in result.shown_unit


def test_ucum_code_is_converted_and_the_reported_unit_is_shown(k):
    obs = observation(k, "magnesium", 0.8, "mmol/L")
    obs["valueQuantity"]["unit"] = "millimoles per litre"
    result = facts(k, observations=[obs]).labs["magnesium"]
    assert result.value == pytest.approx(magnesium_mg_dl(k, 0.8))
    assert (result.shown_value, result.shown_unit) == ("0.8", "millimoles per litre")


@pytest.mark.parametrize(("unit", "mmol_l"), [("mmol/L", 0.8), ("mEq/L", 0.4)], ids=["ucum-spelling", "alias"])
def test_unit_without_a_ucum_code_is_read_from_unit(k, unit, mmol_l):
    obs = observation(k, "magnesium", 0.8, unit, ucum=False)
    result = facts(k, observations=[obs]).labs["magnesium"]
    assert result.value == pytest.approx(magnesium_mg_dl(k, mmol_l))


@pytest.mark.parametrize("change", ["unconvertible-unit", "no-unit", "blank-unit", "no-number", "no-date"])
def test_result_that_cannot_be_compared_is_skipped(k, change):
    obs = observation(k, "potassium", 3.1, "furlong" if change == "unconvertible-unit" else "mmol/L")
    if change == "no-unit":
        obs["valueQuantity"] = {"value": 3.1}
    elif change == "blank-unit":
        obs["valueQuantity"] = {"value": 3.1, "unit": "  "}
    elif change == "no-number":
        obs["valueQuantity"] = {"value": "low", "unit": "mmol/L"}
    elif change == "no-date":
        del obs["effectiveDateTime"]
    found = facts(k, observations=[obs])
    assert found.labs == {}
    # a number in a unit that cannot be read is present with an unknown value; no number or no date is nothing
    assert ("potassium" in found.unread_labs) == (change in ("unconvertible-unit", "no-unit", "blank-unit"))


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered"])
def test_void_observation_is_skipped(k, status):
    assert facts(k, observations=[observation(k, "potassium", 3.1, "mmol/L", status=status)]).labs == {}


def test_reference_range_is_converted_to_the_canonical_unit(k):
    rng = {"low": {"value": 0.7, "unit": "mmol/L"}, "high": {"value": 1.0, "unit": "mmol/L"}}
    obs = observation(k, "magnesium", 0.6, "mmol/L", referenceRange=[rng])
    result = facts(k, observations=[obs]).labs["magnesium"]
    assert result.low == pytest.approx(magnesium_mg_dl(k, 0.7))
    assert result.high == pytest.approx(magnesium_mg_dl(k, 1.0))
    assert result.shown_range == "0.7–1.0 mmol/L"


def test_component_of_a_panel_is_read_as_its_own_result(k):
    part = {"code": lab_code(k, "potassium"), "valueQuantity": {"value": 3.3, "unit": "mmol/L"}}
    panel = {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-06-01",
             "code": {"coding": [{"system": FAKE_SYSTEM, "code": "panel"}]}, "component": [part]}
    result = facts(k, observations=[panel]).labs["potassium"]
    assert result.value == 3.3


def test_alternate_uri_of_a_code_system_is_recognised(k):
    obs = observation(k, "potassium", 3.1, "mmol/L")
    obs["code"] = lab_code(k, "potassium", system="loinc_alt")
    assert facts(k, observations=[obs]).labs["potassium"].value == 3.1


# --- conditions ----------------------------------------------------------------------------------------------


def condition(k, system, code, clinical="active", verification="confirmed", **fields):
    resource = {"resourceType": "Condition", "code": {"coding": [{"system": k[system], "code": code}]}, **fields}
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    return resource


def spasm_icd(k):
    return k["knowledge"].concepts["muscle-spasm"].codes["icd10cm"][0]


def condition_concepts(k, *resources):
    return {c for fact in facts(k, conditions=list(resources)).conditions for c in fact.concepts}


@pytest.mark.parametrize(("clinical", "verification", "counts"), [
    ("active", "confirmed", True), ("recurrence", "confirmed", True), ("relapse", "unconfirmed", True),
    ("active", "provisional", True), ("inactive", "confirmed", False), ("remission", "confirmed", False),
    ("resolved", "confirmed", False), ("active", "refuted", False), ("active", "entered-in-error", False),
    (None, None, True),
], ids=lambda v: str(v))
def test_condition_counts_only_when_active_and_not_refuted(k, clinical, verification, counts):
    found = condition_concepts(k, condition(k, "icd10cm", spasm_icd(k), clinical, verification))
    assert (found == {"muscle-spasm"}) is counts


def test_condition_without_status_but_with_abatement_is_excluded(k):
    cond = condition(k, "icd10cm", spasm_icd(k), None, None, abatementDateTime="2026-01-01")
    assert condition_concepts(k, cond) == set()


@pytest.mark.parametrize("spelling", ["as-listed", "without-dot", "lower-case", "more-specific-child"])
def test_icd10cm_code_matches_by_prefix(k, spelling):
    code = spasm_icd(k)
    sent = {"as-listed": code, "without-dot": code.replace(".", ""), "lower-case": code.lower(),
            "more-specific-child": code + "0"}[spelling]
    assert condition_concepts(k, condition(k, "icd10cm", sent)) == {"muscle-spasm"}


def test_icd10cm_parent_category_does_not_match_a_more_specific_concept(k):
    assert condition_concepts(k, condition(k, "icd10cm", spasm_icd(k)[:3])) == set()


def test_snomed_code_matches_exactly(k):
    code = k["knowledge"].concepts["muscle-cramp"].codes["snomed"][0]
    assert condition_concepts(k, condition(k, "snomed", code)) == {"muscle-cramp"}
    assert condition_concepts(k, condition(k, "snomed", code + "0")) == set()


# --- patient, unknown kinds ----------------------------------------------------------------------------------


def born(years_ago: int, days: int = 0) -> str:
    return (TODAY.replace(year=TODAY.year - years_ago) + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(("birth_date", "age"), [
    (born(70), 70), (born(70, days=1), 69), (born(70, days=-1), 70),
    (str(TODAY.year - 70), 70), (f"{TODAY.year - 70}-12", 69), ("not a date", None),
], ids=["birthday-today", "birthday-tomorrow", "birthday-yesterday", "year-only", "year-and-later-month",
        "unparseable"])
def test_age_counts_whole_years_from_birth_date(k, birth_date, age):
    patient = {"resourceType": "Patient", "id": "p", "birthDate": birth_date, "gender": "female"}
    result = facts(k, patient=[patient])
    assert (result.age, result.sex) == (age, "female")


def test_without_a_patient_age_and_sex_are_unknown(k):
    result = facts(k)
    assert (result.age, result.sex) == (None, None)


def test_unknown_data_kinds_are_passed_through(k):
    assert facts(k, ["observations", "conditions"]).unknown == frozenset({"observations", "conditions"})


# --- flag_of -------------------------------------------------------------------------------------------------


def result(value, low=None, high=None, interpretation=None):
    return LabResult(concept="x", value=value, low=low, high=high, interpretation=interpretation, when=TODAY,
                     shown_value=str(value), shown_unit="u", shown_range="")


@pytest.mark.parametrize(("lab", "flag"), [
    (result(4.0, 3.5, 5.0, "L"), None),
    (result(3.0, 3.5, 5.0, "N"), "low"),
    (result(5.5, 3.5, 5.0), "high"),
    (result(2.0, high=5.0), None),
    (result(1.0, interpretation="H"), "high"),
    (result(9.0, interpretation="LL"), "low"),
    (result(1.0, interpretation="N"), None),
    (result(3.0), "low"),
    (result(6.0), "high"),
    (result(4.0), None),
    (result(3.0, interpretation="A"), "low"),
    (result(4.0, interpretation="A"), "abnormal"),
    (result(4.0, interpretation="X"), None),
], ids=["range-beats-interpretation", "range-says-low", "range-says-high", "one-sided-range-used-alone",
        "interpretation-beats-fallback", "critical-low-interpretation", "normal-interpretation-beats-fallback",
        "fallback-low", "fallback-high", "fallback-within", "abnormal-code-takes-direction-from-fallback",
        "abnormal-code-within-fallback-is-still-abnormal", "unknown-code-falls-back-to-the-range"])
def test_flag_is_judged_by_range_then_interpretation_then_fallback(lab, flag):
    assert flag_of(lab, 3.5, 5.0) == flag


def limited_concept(k):
    """A condition concept with a maximum age, and its limit and first ICD-10-CM code (read from the mappings)."""
    cid, days = next((cid, c.max_age_days) for cid, c in sorted(k["knowledge"].concepts.items())
                     if c.max_age_days and c.codes.get("icd10cm"))
    return cid, days, k["knowledge"].concepts[cid].codes["icd10cm"][0]


def patient_born(years):
    return {"resourceType": "Patient", "birthDate": date(TODAY.year - years, TODAY.month, TODAY.day).isoformat()}


def limited_concepts(k, cond, patient=None):
    resources = {"conditions": [cond], "patient": [patient] if patient else []}
    return {c for fact in extract_facts(resources, (), k["knowledge"].terminology, TODAY).conditions
            for c in fact.concepts}


@pytest.mark.parametrize(("field", "inside"), [
    ("onsetDateTime", True), ("onsetDateTime", False), ("onsetPeriod", True), ("onsetPeriod", False),
    ("recordedDate", True), ("recordedDate", False), ("onsetAge", True), ("onsetAge", False)])
def test_acute_condition_counts_only_within_its_maximum_age(k, field, inside):
    cid, days, code = limited_concept(k)
    age = days - 1 if inside else days + 1
    when = (TODAY - timedelta(days=age)).isoformat()
    lived = (TODAY - date.fromisoformat(patient_born(40)["birthDate"])).days
    value = {"onsetPeriod": {"start": when}, "onsetAge": {"value": lived - age, "unit": "d", "code": "d"}}.get(
        field, when)
    assert (cid in limited_concepts(k, condition(k, "icd10cm", code, **{field: value}), patient_born(40))) is inside


def test_acute_condition_is_dated_by_its_earliest_date(k):
    cid, days, code = limited_concept(k)
    cond = condition(k, "icd10cm", code, onsetDateTime=(TODAY - timedelta(days=days + 5)).isoformat(),
                     recordedDate=TODAY.isoformat())
    assert cid not in limited_concepts(k, cond)


def test_acute_condition_without_any_date_counts_as_current(k):
    cid, _, code = limited_concept(k)
    assert cid in limited_concepts(k, condition(k, "icd10cm", code))


def test_onset_age_without_birth_date_counts_as_current(k):
    cid, _, code = limited_concept(k)
    assert cid in limited_concepts(k, condition(k, "icd10cm", code, onsetAge={"value": 1, "code": "a"}))


def test_condition_without_maximum_age_counts_however_old(k):
    assert condition_concepts(k, condition(k, "icd10cm", spasm_icd(k), onsetDateTime="1990-01-01")) == {
        "muscle-spasm"}


PAST, FUTURE = (TODAY - timedelta(days=3)).isoformat(), (TODAY + timedelta(days=3)).isoformat()


@pytest.mark.parametrize(("fields", "abated"), [
    ({"abatementDateTime": PAST}, True), ({"abatementDateTime": FUTURE}, False),
    ({"abatementPeriod": {"start": PAST, "end": PAST}}, True), ({"abatementPeriod": {"end": FUTURE}}, False),
    ({"abatementAge": {"value": 39, "code": "a"}}, True), ({"abatementAge": {"value": 41, "code": "a"}}, False),
    ({"abatementRange": {"low": {"value": 30, "code": "a"}}}, True), ({"abatementString": "in childhood"}, True),
    ({"abatementBoolean": True}, True), ({"abatementBoolean": False}, False)], ids=str)
@pytest.mark.parametrize("clinical", ["active", None])
def test_condition_with_an_abatement_in_the_past_is_not_active(k, fields, abated, clinical):
    cond = condition(k, "icd10cm", spasm_icd(k), clinical, "confirmed", **fields)
    assert (limited_concepts(k, cond, patient_born(40)) == set()) is abated


def test_abatement_age_without_birth_date_is_taken_as_past(k):
    cond = condition(k, "icd10cm", spasm_icd(k), None, None, abatementAge={"value": 5, "code": "a"})
    assert limited_concepts(k, cond) == set()


@pytest.mark.parametrize(("verification", "confirmed"), [
    ("confirmed", True), (None, True), ("provisional", False), ("differential", False), ("unconfirmed", False)])
def test_condition_is_confirmed_unless_provisional_differential_or_unconfirmed(k, verification, confirmed):
    (fact,) = facts(k, conditions=[condition(k, "icd10cm", spasm_icd(k), "active", verification)]).conditions
    assert fact.confirmed is confirmed
