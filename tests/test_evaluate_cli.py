"""spasm-cds evaluate: one file gives the cards (table, or --json the exact response); a folder gives the
alert-burden report, whose figures over the 48 shared Synthea bundles match what pipeline.respond gives."""
from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from cds_service.case_runner import build_request, build_resources, service_for
from cds_service.cli import main
from cds_service.knowledge.model import Knowledge
from cds_service.pipeline import respond
from cds_service.render.cards import EXTENSION_KEY
from cds_service.settings import Settings
from tests.conftest import REPO, SHARED

BUNDLES = Path(SHARED) / "synthea" / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES.glob("*.json")) if BUNDLES.is_dir() else []
needs_bundles = pytest.mark.skipif(len(BUNDLE_NAMES) != 48, reason=f"the 48 Synthea bundles are not in {BUNDLES}")


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("SPASM_CDS_KNOWLEDGE_DIR", str(REPO))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells to the terminal width


def evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rules_of(response: dict) -> Counter[str]:
    return Counter(r for card in response["cards"] for r in card["extension"][EXTENSION_KEY].get("rules", ()))


def case_with(knowledge: Knowledge, hook: str):
    """A must-give-a-card case of the hook with its data all available and at most one coded, selected draft."""
    for case in knowledge.cases:
        drafts = case.chart.get("draft_orders") or ()
        if (case.hook == hook and case.expect == "card" and not case.chart.get("unavailable")
                and len(drafts) == (hook != "patient-view")
                and all("rxnorm" in d and d.get("coded", True) and d.get("selected", True) for d in drafts)):
            return case
    pytest.fail(f"no {hook} case fits; the test needs one")


def test_a_request_file_gives_with_json_exactly_the_response_of_the_pipeline(capsys, tmp_path, knowledge, today):
    case = case_with(knowledge, "patient-view")
    service = service_for(knowledge, case)
    body = build_request(knowledge, case, service, today)
    (tmp_path / "request.json").write_text(json.dumps(body))

    code, out, _ = evaluate(capsys, str(tmp_path / "request.json"), "--json", "--today", today.isoformat())

    expected = respond(body, service, knowledge, Settings(), today)
    assert code == 0
    assert expected["cards"], "the case must give a card for this test to mean anything"
    assert json.loads(out) == expected


def test_a_request_file_without_json_shows_each_card_as_a_row(capsys, tmp_path, knowledge, today):
    case = case_with(knowledge, "patient-view")
    body = build_request(knowledge, case, service_for(knowledge, case), today)
    (tmp_path / "request.json").write_text(json.dumps(body))

    code, out, _ = evaluate(capsys, str(tmp_path / "request.json"), "--today", today.isoformat())

    assert code == 0
    for card in respond(body, service_for(knowledge, case), knowledge, Settings(), today)["cards"]:
        assert card["indicator"] in out
        assert card["summary"][:40] in out
    assert case.rule in out


def test_a_bundle_with_a_draft_order_on_order_select_gives_the_rules_card(capsys, tmp_path, knowledge, today):
    case = case_with(knowledge, "order-select")
    resources = build_resources(knowledge, case, "bundle-patient", today)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{kind}-{i}", "resource": r}
                        for kind, found in resources.items() for i, r in enumerate(found)]}
    (tmp_path / "patient.json").write_text(json.dumps(bundle))
    rxnorm = str(case.chart["draft_orders"][0]["rxnorm"])

    code, out, _ = evaluate(capsys, str(tmp_path / "patient.json"), "--hook", "order-select", "--draft-order", rxnorm,
                            "--today", today.isoformat(), "--json")
    without_draft = evaluate(capsys, str(tmp_path / "patient.json"), "--hook", "order-select", "--today",
                             today.isoformat())

    response = json.loads(out)
    direct = respond(build_request(knowledge, case, service_for(knowledge, case), today),
                     service_for(knowledge, case), knowledge, Settings(), today)
    assert code == 0
    assert case.rule in rules_of(response)
    assert set(rules_of(response)) == set(rules_of(direct))
    assert without_draft[0] == 2 and "--draft-order" in without_draft[2]


@needs_bundles
def test_a_draft_order_on_patient_view_is_refused_naming_the_file(capsys):
    code, _, err = evaluate(capsys, str(BUNDLES / BUNDLE_NAMES[0]), "--draft-order", "1")

    assert code == 2
    assert BUNDLE_NAMES[0] in err and "order hook" in err


@needs_bundles
def test_synthea_folder_without_a_cramp_finding_burdens_no_one(capsys, today):
    code, out, _ = evaluate(capsys, str(BUNDLES), "--json", "--today", today.isoformat())

    figures = json.loads(out)
    assert code == 0
    assert figures["patients"] == 48
    assert figures["patients_with_cards"] == 0
    assert figures["cards_per_patient"] == {"median": 0, "p90": 0, "max": 0}
    assert figures["findings_by_rule"] == {}


@needs_bundles
def test_synthea_folder_with_cramps_reports_the_figures_the_pipeline_gives(capsys, knowledge, today):
    from tests.support.synthea import cramp_condition, prefetch_request, synthea_chart

    code, out, _ = evaluate(capsys, str(BUNDLES), "--json", "--assume-cramps", "--today", today.isoformat())

    figures = json.loads(out)
    service = knowledge.services["spasm-cramps-patient-view"]
    by_rule: Counter[str] = Counter()
    by_indicator: Counter[str] = Counter()
    without_workup = []
    for name in BUNDLE_NAMES:
        chart = synthea_chart(name)
        body = prefetch_request(chart, service, extra=[cramp_condition(knowledge, chart.patient_id, today)])
        response = respond(body, service, knowledge, Settings(), today)
        by_rule += rules_of(response)
        by_indicator.update(card["indicator"] for card in response["cards"])
        if not any(knowledge.rules[r].group == "workup" for r in rules_of(response)):
            without_workup.append(name)
    print("\nalert burden with --assume-cramps:", json.dumps(figures, indent=1))
    assert code == 0
    assert figures["patients"] == 48
    assert 0 < figures["patients_with_cards"] < 48  # no card without a reason the data give (issue 17)
    # a stale potassium alone is no reason for the work-up (issue 17): some patients have none, none is left
    # without a card for another reason that would have wanted it
    assert 0 < len(without_workup) < 48 and by_rule["missing-electrolytes"] < 48
    assert 1 <= figures["cards_per_patient"]["median"] <= figures["cards_per_patient"]["p90"]
    assert figures["cards_per_patient"]["p90"] <= figures["cards_per_patient"]["max"] <= 4
    assert figures["findings_by_rule"] == dict(by_rule)
    assert figures["cards_by_indicator"] == dict(by_indicator)
    assert figures["cards"] == sum(by_indicator.values())


@needs_bundles
def test_synthea_folder_report_as_a_table(capsys, today):
    code, out, err = evaluate(capsys, str(BUNDLES), "--assume-cramps", "--today", today.isoformat())

    assert code == 0
    assert "patients with any card" in out and "48" in out
    assert "findings by rule" in out
    assert "Traceback" not in err


def test_a_folder_reports_files_it_cannot_read_and_counts_the_rest(capsys, tmp_path, knowledge):
    case = case_with(knowledge, "patient-view")
    body = build_request(knowledge, case, service_for(knowledge, case), date(2026, 1, 15))
    (tmp_path / "good.json").write_text(json.dumps(body))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "observation.json").write_text(json.dumps({"resourceType": "Observation"}))

    code, out, err = evaluate(capsys, str(tmp_path), "--json", "--today", "2026-01-15")

    figures = json.loads(out)
    assert code == 1
    assert figures["patients"] == 1
    assert sorted(figures["failed_files"]) == ["broken.json", "observation.json"]
    assert "broken.json" in err


def test_a_folder_reports_unread_lab_units_by_lab_and_unit(capsys, tmp_path, knowledge, today):
    case = next(c for c in knowledge.cases if c.name == "potassium-in-a-nonsense-unit-magnesium-calcium-recent")
    (unit,) = {lab["unit"] for lab in case.chart["labs"]
               if lab["loinc"] in knowledge.concepts["potassium"].codes["loinc"]}
    service = service_for(knowledge, case)
    for i in range(2):
        (tmp_path / f"patient-{i}.json").write_text(json.dumps(build_request(knowledge, case, service, today)))
    readable = case_with(knowledge, "patient-view")
    (tmp_path / "readable.json").write_text(json.dumps(build_request(knowledge, readable, service, today)))

    code, out, _ = evaluate(capsys, str(tmp_path), "--json", "--today", today.isoformat())

    assert code == 0
    assert json.loads(out)["unread_lab_units"] == [{"lab": "potassium", "unit": unit, "patients": 2}]
    code, out, _ = evaluate(capsys, str(tmp_path), "--today", today.isoformat())
    assert "unit as sent" in out and "potassium" in out and repr(unit) in out


def test_readme_order_example_gives_the_critical_interaction_card(capsys, monkeypatch):
    import shlex

    line = next(line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
                if "spasm-cds evaluate" in line and "--draft-order" in line)
    argv = [*shlex.split(line.split("#")[0])[1:], "--json"]
    monkeypatch.chdir(REPO)
    assert main(argv) == 0
    cards = json.loads(capsys.readouterr().out)["cards"]
    critical = [c for c in cards if c["indicator"] == "critical"]
    assert critical and "Contraindicated" in critical[0]["summary"]
