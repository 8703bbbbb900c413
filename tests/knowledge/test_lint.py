"""Broken knowledge trees: each is refused with every problem named by file and field (loader and `spasm-cds lint`).

Each case copies the small valid tree in broken/base/ and breaks one thing, so the fixture shows only the fault."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cds_service.errors import KnowledgeError
from cds_service.knowledge.loader import load_knowledge
from cds_service.terminology import UnitConverter
from tests.conftest import REPO

BASE = Path(__file__).resolve().parent / "broken" / "base"
RULE = "cards/contributors/examplinol-low-examplium.yaml"
CASES = "cards/contributors/examplinol-low-examplium.cases.yaml"
DRUG = "mappings/medications/examplinols.yaml"
LAB = "mappings/labs/examplium.yaml"
OFFERED = ("lab.corrected, lab.date, lab.evidence, lab.flag, lab.name, lab.range, lab.times_uln, lab.unit, lab.value, "
           "medication.evidence, medication.label, medication.name")


@pytest.fixture(scope="module")
def units() -> UnitConverter:
    # one UCUM registry for the module: building one per load would dominate the run time
    return UnitConverter(yaml.safe_load((BASE / "mappings" / "units.yaml").read_text())["aliases"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "knowledge"
    shutil.copytree(BASE, root)
    return root


def edit(root: Path, rel: str, change) -> None:
    path = root / rel
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def problems_of(root: Path, units: UnitConverter) -> list[str]:
    with pytest.raises(KnowledgeError) as refused:
        load_knowledge(root, units)
    return refused.value.problems


def rule_id_differs_from_file_name(root):
    edit(root, RULE, lambda d: d.update(id="examplinol-renamed"))


def concept_id_differs_from_file_name(root):
    edit(root, DRUG, lambda d: d.update(id="examplinol-drugs"))


def rule_names_an_unknown_concept(root):
    edit(root, RULE, lambda d: d["include"][0].update(medication="no-such-drugs"))


def rule_names_a_concept_of_another_domain(root):
    edit(root, RULE, lambda d: d["include"][0].update(medication="example-ache"))


def smart_link_charts_a_medication_as_a_lab(root):
    edit(root, RULE, lambda d: d["card"].update(smart_link={"label": "Examplium over time", "labs": ["examplinols"]}))


def rule_has_no_no_card_case(root):
    edit(root, CASES, lambda d: [c.update(expect="card") for c in d["cases"]])


def rule_has_no_cases_file(root):
    (root / CASES).unlink()


def rule_cites_an_unknown_source(root):
    edit(root, RULE, lambda d: d.update(sources=["no-such-source"]))


def rule_cites_a_background_source(root):
    edit(root, "cards/sources.yaml", lambda d: d["sources"].update(
        {"example-blog": {"label": "Example blog", "citation": "A patient article.", "background": True}}))
    edit(root, RULE, lambda d: d.update(sources=["example-source", "example-blog"]))


def card_text_says_a_forbidden_phrase(root):
    edit(root, RULE, lambda d: d["card"].update(detail="Try some snake oil for {lab.name}."))


def summary_has_an_unknown_placeholder(root):
    edit(root, RULE, lambda d: d["card"].update(summary="Examplium is {lab.colour} today"))


def lab_threshold_unit_cannot_be_converted(root):
    threshold = {"lab": "examplium", "below": {"value": 3, "unit": "furlong"}, "within_days": 90}
    edit(root, RULE, lambda d: d["include"].__setitem__(1, threshold))


def daily_dose_threshold_is_not_a_mass(root):
    edit(root, RULE, lambda d: d["include"][0].update(daily_dose={"above": {"value": 20, "unit": "mL"}}))


def daily_dose_placeholder_without_a_daily_dose_test(root):
    edit(root, RULE, lambda d: d["card"].update(summary="Examplinol {medication.daily_dose} with low examplium"))


def dosing_table_cites_an_unknown_source(root):
    edit(root, "mappings/dosing.yaml", lambda d: d.update(sources=["no-such-source"]))


def unquoted_numeric_code(root):
    with open(root / DRUG, "a", encoding="utf-8") as f:
        f.write("codes: {rxnorm: [999999]}\n")  # unquoted: YAML reads an int


def criterion_with_two_kinds(root):
    edit(root, RULE, lambda d: d["include"].__setitem__(0, {"medication": "examplinols", "condition": "example-ache"}))


def required_field_missing(root):
    edit(root, LAB, lambda d: d.pop("label"))


def broken_yaml(root):
    (root / LAB).write_text("id: examplium\nlabel: [examplium\n", encoding="utf-8")


def sources_file_missing(root):
    (root / "cards" / "sources.yaml").unlink()


SERVICES = "cards/services.yaml"
MAX_CARDS = {"code": "max-cards", "type": "integer", "name": "Most cards", "description": "At most this many.",
             "default": 30, "limits": "max-cards", "minimum": 1, "maximum": 20}


def snooze_without_days(root):
    edit(root, SERVICES, lambda d: d["override_reasons"][0].update(effect="snooze"))


def override_reasons_for_an_unknown_rule_folder(root):
    edit(root, SERVICES, lambda d: d.update(override_reasons_by_rule_group={"no-such-folder": ["not-relevant"],
                                                                            "contributors": ["no-such-reason"]}))


def repeat_window_for_an_unknown_group(root):
    edit(root, SERVICES, lambda d: d.update(repeat_windows={"days": {"info": 1, "warning": 7, "critical": 1},
                                                            "groups": {"no-such-group": 2}}))


def service_offers_an_unknown_option(root):
    edit(root, SERVICES, lambda d: d["services"][0].update(configuration=["no-such-option"]))


def option_default_out_of_range(root):
    edit(root, SERVICES, lambda d: d.update(configuration_options=[MAX_CARDS]))


def medication_concept_without_codes(root):
    edit(root, DRUG, lambda d: d.pop("codes"))


def medication_concept_lists_a_product_code(root):
    edit(root, DRUG, lambda d: d.update(codes={"rxnorm": ["999998", "999999"]}))


def identity_case_names_an_unknown_concept(root):
    edit(root, "mappings/identity-cases.yaml", lambda d: d["cases"][0].update(concepts=["no-such-drugs"]))


def concept_names_an_unknown_route(root):
    edit(root, DRUG, lambda d: d.update(routes=["intergalactic"]))


def patient_view_skips_cards_of_order_select(root):
    edit(root, SERVICES, lambda d: d["services"][0].update(
        skip_cards_shown_at={"service": "example-service", "within_minutes": 60}))


def notice_says_a_forbidden_phrase(root):
    edit(root, SERVICES, lambda d: d["missing_data_card"]["unidentified_orders"].update(
        detail="The order was not checked; try snake oil."))


def notice_has_an_unknown_placeholder(root):
    edit(root, SERVICES, lambda d: d["missing_data_card"]["unidentified_orders"].update(
        summary="Not checked: {draft.name}"))


def notice_summary_too_long(root):
    edit(root, SERVICES, lambda d: d["missing_data_card"]["unidentified_orders"].update(
        summary="Not checked: {missing.orders} " + "very " * 30 + "long"))


def template_has_a_token_the_service_cannot_fill(root):
    edit(root, SERVICES, lambda d: d["data"]["observations"].update(
        template=d["data"]["observations"]["template"] + "&date=ge{{today - 90 days}}"))


def service_claims_a_hook_version_that_does_not_exist(root):
    edit(root, SERVICES, lambda d: d["services"][0].update(hookVersion="2.0"))


BROKEN = [
    (service_claims_a_hook_version_that_does_not_exist,
     f"{SERVICES}: services[0].hookVersion: '2.0' is not the version of the patient-view hook definition (1.0)"),
    (template_has_a_token_the_service_cannot_fill,
     f"{SERVICES}: data.observations.template: {{{{today - 90 days}}}} is not a token this service fills "
     "(context.patientId/userId/encounterId, the user* ids, today() with an optional +/- N days/weeks/months/years)"),
    (rule_id_differs_from_file_name,
     f"{RULE}: id: 'examplinol-renamed' must equal the file name 'examplinol-low-examplium'"),
    (concept_id_differs_from_file_name,
     f"{DRUG}: id: 'examplinol-drugs' must equal the file name 'examplinols'"),
    (rule_names_an_unknown_concept,
     f"{RULE}: include[0].medication: 'no-such-drugs' is not a concept in mappings/"),
    (rule_names_a_concept_of_another_domain,
     f"{RULE}: include[0].medication: 'example-ache' is a condition, not a medication"),
    (smart_link_charts_a_medication_as_a_lab,
     f"{RULE}: card.smart_link.labs: 'examplinols' is not a lab concept in mappings/labs"),
    (rule_has_no_no_card_case,
     f"{CASES}: cases: rule 'examplinol-low-examplium' needs at least one case with expect: no-card"),
    (rule_has_no_cases_file,
     f"{RULE}: cases: add {CASES} with at least one card and one no-card case"),
    (rule_cites_an_unknown_source,
     f"{RULE}: sources[0]: 'no-such-source' is not in cards/sources.yaml"),
    (rule_cites_a_background_source,
     f"{RULE}: sources[1]: 'example-blog' is background reading, not an authority; "
     "cite the label, guideline or paper for this fact"),
    (card_text_says_a_forbidden_phrase,
     f"{RULE}: card.detail: says 'snake oil', which policy forbids: test fixture policy"),
    (summary_has_an_unknown_placeholder,
     f"{RULE}: card.summary: unknown placeholder {{lab.colour}}; this rule offers {OFFERED}"),
    (lab_threshold_unit_cannot_be_converted,
     f"{RULE}: include[1].below.unit: 'furlong' cannot be converted to 'mmol/L' for examplium"),
    (unquoted_numeric_code,
     f"{DRUG}: codes.rxnorm[0]: 999999 is not of type 'string'"),
    (medication_concept_without_codes,
     f"{DRUG}: codes.rxnorm: a medication concept needs the RxNorm ingredient code (IN) of each ingredient, "
     "and PIN codes for salts; it has none"),
    (medication_concept_lists_a_product_code,
     f"{DRUG}: codes.rxnorm[1]: 999999 is a SCD in mappings/rxnorm/product-ingredient.tsv; list ingredient (IN) "
     "and salt (PIN) codes only"),
    (identity_case_names_an_unknown_concept,
     "mappings/identity-cases.yaml: examplinol-by-product-code: 'no-such-drugs' is not a medication concept"),
    (concept_names_an_unknown_route,
     f"{DRUG}: routes[0]: 'intergalactic' is not a route in mappings/routes.yaml"),
    (criterion_with_two_kinds,
     f"{RULE}: include[0]: not a valid criterion: use exactly one of medication, condition, lab (with within_days), "
     "missing-lab (with within_days), age, sex, any, draft-order, and only their own fields"),
    (required_field_missing,
     f"{LAB}: (top): add the required field 'label'"),
    (sources_file_missing,
     "cards/sources.yaml: missing"),
    (snooze_without_days,
     f"{SERVICES}: override_reasons[0]: add the required field 'days'"),
    (override_reasons_for_an_unknown_rule_folder,
     f"{SERVICES}: override_reasons_by_rule_group.no-such-folder: 'no-such-folder' is not a folder of rules under "
     "cards/"),
    (override_reasons_for_an_unknown_rule_folder,
     f"{SERVICES}: override_reasons_by_rule_group.contributors: 'no-such-reason' is not in the override_reasons "
     "catalogue"),
    (repeat_window_for_an_unknown_group,
     f"{SERVICES}: repeat_windows.groups: 'no-such-group' is not one of card_groups"),
    (service_offers_an_unknown_option,
     f"{SERVICES}: services[0].configuration: 'no-such-option' is not in configuration_options"),
    (option_default_out_of_range,
     f"{SERVICES}: configuration_options[0].default: 30 is not between minimum 1 and maximum 20"),
    (patient_view_skips_cards_of_order_select,
     f"{SERVICES}: services[0].skip_cards_shown_at: only an order-sign service can skip the cards of an "
     "order-select service named in services"),
    (notice_says_a_forbidden_phrase,
     f"{SERVICES}: missing_data_card.unidentified_orders.detail: says 'snake oil', which policy forbids: "
     "test fixture policy"),
    (notice_has_an_unknown_placeholder,
     f"{SERVICES}: missing_data_card.unidentified_orders.summary: unknown placeholder {{draft.name}}; the notice "
     "offers missing.count, missing.data, missing.orders"),
    (daily_dose_threshold_is_not_a_mass,
     f"{RULE}: include[0].daily_dose.above.unit: 'mL' cannot be converted to 'mg' (mappings/dosing.yaml units.mass)"),
    (daily_dose_placeholder_without_a_daily_dose_test,
     f"{RULE}: card.summary: unknown placeholder {{medication.daily_dose}}; this rule offers {OFFERED}"),
    (dosing_table_cites_an_unknown_source,
     "mappings/dosing.yaml: sources[0]: 'no-such-source' is not in cards/sources.yaml"),
    (notice_summary_too_long,
     f"{SERVICES}: missing_data_card.unidentified_orders.summary: 170 characters once filled in; at most 139"),
]


def test_base_tree_loads_cleanly(units):
    knowledge = load_knowledge(BASE, units)
    assert list(knowledge.rules) == ["examplinol-low-examplium"]
    assert {c.expect for c in knowledge.cases} == {"card", "no-card"}


@pytest.mark.parametrize(("breakage", "message"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_broken_tree_is_refused_naming_file_and_field(tree, units, breakage, message):
    breakage(tree)
    assert message in problems_of(tree, units)


def test_unreadable_yaml_is_named_with_its_line(tree, units):
    broken_yaml(tree)
    (problem,) = problems_of(tree, units)
    assert problem.startswith(f"{LAB}: cannot be read as YAML: ")
    assert "line 3" in problem and "\n" not in problem


MESSAGE = dict(BROKEN)


@pytest.mark.parametrize("breakages", [
    (concept_id_differs_from_file_name, rule_cites_an_unknown_source, card_text_says_a_forbidden_phrase,
     rule_has_no_no_card_case),
    (unquoted_numeric_code, criterion_with_two_kinds, required_field_missing),
], ids=["cross-file-problems-in-three-files", "schema-problems-in-three-files"])
def test_every_problem_is_reported_not_only_the_first(tree, units, breakages):
    for breakage in breakages:
        breakage(tree)
    problems = problems_of(tree, units)
    assert [MESSAGE[b] for b in breakages if MESSAGE[b] not in problems] == []


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cds_service", "lint", "--knowledge-dir", str(root)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_lint_command_exits_1_and_prints_every_problem(tree):
    rule_names_an_unknown_concept(tree)
    rule_cites_an_unknown_source(tree)
    done = lint(tree)
    assert done.returncode == 1
    assert f"{RULE}: include[0].medication: 'no-such-drugs' is not a concept in mappings/" in done.stderr
    assert f"{RULE}: sources[0]: 'no-such-source' is not in cards/sources.yaml" in done.stderr


@pytest.mark.parametrize("root", [REPO, BASE], ids=["bundled-knowledge", "base-fixture"])
def test_lint_command_passes_a_sound_tree(root):
    done = lint(root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("ok: ")


def with_bundled_policy(root: Path, detail: str) -> None:
    shutil.copy(REPO / "cards" / "policy.yaml", root / "cards" / "policy.yaml")
    edit(root, RULE, lambda d: d["card"].update(detail=detail))


PHRASES = yaml.safe_load((Path(__file__).resolve().parent / "policy-phrases.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("detail", "caught"), [(p["detail"], p["caught"]) for p in PHRASES["forbidden"]],
                         ids=[p["caught"] for p in PHRASES["forbidden"]])
def test_bundled_policy_refuses_doses_quinine_and_regenerative_products(tree, units, detail, caught):
    with_bundled_policy(tree, detail)
    policy = yaml.safe_load((REPO / "cards" / "policy.yaml").read_text(encoding="utf-8"))["forbidden"]
    firing = [f["pattern"] for f in policy if re.search(f["pattern"], caught, re.IGNORECASE)]
    assert firing, f"no pattern of cards/policy.yaml catches {caught!r}"
    assert f"{RULE}: card.detail: says {firing[0]!r}, which policy forbids: " in " ".join(problems_of(tree, units))


@pytest.mark.parametrize("detail", PHRASES["allowed"])
def test_bundled_policy_lets_lab_values_through(tree, units, detail):
    with_bundled_policy(tree, detail)
    load_knowledge(tree, units)


def test_a_rule_carries_its_version_onto_its_cards(tree, units):
    """Issue 16: a rule's `version` (default 1) is on the rule and in the extension of every card it shows, so
    feedback and cards issued can be told apart once the rule changes; 0 is refused."""
    from datetime import date

    from cds_service.case_runner import build_request, service_for
    from cds_service.pipeline import respond
    from cds_service.render.cards import EXTENSION_KEY
    from cds_service.settings import Settings

    assert load_knowledge(tree, units).rules["examplinol-low-examplium"].version == 1
    edit(tree, RULE, lambda d: d.update(version=2))
    knowledge = load_knowledge(tree, units)
    assert knowledge.rules["examplinol-low-examplium"].version == 2
    case = next(c for c in knowledge.cases if c.expect == "card")
    service = service_for(knowledge, case)
    cards = respond(build_request(knowledge, case, service, date.today()), service, knowledge,
                    Settings(knowledge_dir=tree), date.today())["cards"]
    versions = [c["extension"][EXTENSION_KEY].get("ruleVersions") for c in cards if "rules" in c["extension"][
        EXTENSION_KEY]]
    assert versions and all(v == {"examplinol-low-examplium": 2} for v in versions)
    edit(tree, RULE, lambda d: d.update(version=0))
    assert any("version" in p for p in problems_of(tree, units))
