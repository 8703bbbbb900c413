"""spasm-cds evaluate on a population (issue 15): the 48 Synthea bundles as a folder of Bundles, as a Bulk NDJSON
export made from them, and (replicated with new ids) on a Dask LocalCluster give the same cards per rule; the rows
(CSV, Parquet) hold a hashed key unless --show-ids; bad NDJSON names file:line; resources naming no patient are
counted, not fatal."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pytest

from cds_service.case_runner import build_resources
from cds_service.cli import main
from cds_service.population import runner
from cds_service.population.ndjson import export_bundles
from cds_service.population.patients import patient_key
from cds_service.population.rows import COLUMNS
from tests.conftest import REPO
from tests.test_evaluate_cli import BUNDLE_NAMES, BUNDLES, case_with, needs_bundles

DAY = "2026-06-01"
WHAT_IF = ("--assume-cramps", "--today", DAY, "--quiet", "--json")


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("SPASM_CDS_KNOWLEDGE_DIR", str(REPO))


def evaluate(capsys, *args: str) -> tuple[int, dict, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip().startswith("{") else {}, err


def burden(figures: dict) -> dict:
    """The figures that must not depend on the input's form or where it ran."""
    return {k: v for k, v in figures.items() if k not in ("settings", "input")}


@pytest.fixture(scope="module")
def synthea_ndjson(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    assert export_bundles(sorted(BUNDLES.glob("*.json")), out) == 48
    return out


@pytest.fixture(scope="module")
def bundle_run(tmp_path_factory) -> tuple[dict, list[dict]]:
    """The 48 bundles as a folder, on two processes: the figures and the CSV rows."""
    rows = tmp_path_factory.mktemp("rows") / "rows.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", str(BUNDLES), *WHAT_IF, "--workers", "2", "--csv", str(rows)]) == 0
    with rows.open(encoding="utf-8") as handle:
        return json.loads(out.getvalue()), list(csv.DictReader(handle))


@needs_bundles
def test_the_export_is_one_file_per_type_with_patient_references(synthea_ndjson):
    observations = [json.loads(line) for line in (synthea_ndjson / "Observation.ndjson").read_text().splitlines()]
    patients = {json.loads(line)["id"] for line in (synthea_ndjson / "Patient.ndjson").read_text().splitlines()}

    assert len(patients) == 48
    assert {o["subject"]["reference"].partition("/")[0] for o in observations} == {"Patient"}
    assert {o["subject"]["reference"].partition("/")[2] for o in observations} <= patients
    assert len({o["subject"]["reference"] for o in observations}) > 1  # many patients mixed in one file
    assert "urn:uuid:" not in (synthea_ndjson / "MedicationRequest.ndjson").read_text()


@needs_bundles
def test_bundles_and_their_ndjson_export_give_the_same_report_and_rows(capsys, bundle_run, synthea_ndjson, tmp_path):
    figures, rows = bundle_run
    code, from_ndjson, err = evaluate(capsys, str(synthea_ndjson), *WHAT_IF, "--workers", "2",
                                      "--csv", str(tmp_path / "rows.csv"))

    with (tmp_path / "rows.csv").open(encoding="utf-8") as handle:
        ndjson_rows = list(csv.DictReader(handle))
    assert code == 0 and "Traceback" not in err
    assert figures["patients"] == 48 and figures["findings_by_rule"], "the what-if must give cards to compare"
    assert burden(from_ndjson) == burden(figures)
    assert ndjson_rows == rows
    assert from_ndjson["input"]["format"] == "ndjson" and "Claim.ndjson" in from_ndjson["input"]["files_skipped"]
    assert from_ndjson["input"]["resources_by_type"]["Patient"] == 48


@needs_bundles
def test_one_process_and_two_give_the_same_figures(capsys, bundle_run, synthea_ndjson):
    code, one, _ = evaluate(capsys, str(synthea_ndjson), *WHAT_IF, "--workers", "1")

    assert code == 0
    assert burden(one) == burden(bundle_run[0])
    assert one["settings"]["engine"] == "this machine, 1 process"


@needs_bundles
def test_a_dask_local_cluster_counts_the_replicated_population_as_the_local_run(capsys, bundle_run, tmp_path,
                                                                              monkeypatch):
    """The 48 bundles three times with new ids (144 patients, files mixed) on a LocalCluster of two worker
    processes on 127.0.0.1, files read in 1 MiB ranges (a patient's lines in several): the same rows as two local
    processes, and three times the 48's counts per rule."""
    monkeypatch.setattr(runner, "_RANGE_BYTES", 2**20)
    export_bundles(sorted(BUNDLES.glob("*.json")), tmp_path / "x3", copies=3)
    assert (tmp_path / "x3" / "Observation.ndjson").stat().st_size > 8 * 2**20
    code, local, _ = evaluate(capsys, str(tmp_path / "x3"), *WHAT_IF, "--workers", "2",
                              "--parquet", str(tmp_path / "local.parquet"))
    code_dask, dask, err = evaluate(capsys, str(tmp_path / "x3"), *WHAT_IF, "--engine", "dask", "--scheduler",
                                    "local", "--workers", "2", "--parquet", str(tmp_path / "dask.parquet"))

    import pyarrow.parquet as pq
    assert code == code_dask == 0, err
    assert dask["settings"]["engine"] == "dask (local)"
    assert burden(dask) == burden(local)
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert dask["patients"] == 144
    assert dask["findings_by_rule"] == {rule: 3 * n for rule, n in bundle_run[0]["findings_by_rule"].items()}
    assert dask["input"] == local["input"]
    assert local["input"]["resources_by_type"]["Patient"] == 144


@needs_bundles
def test_rows_carry_a_hashed_key_and_no_id_or_name_unless_asked(capsys, bundle_run, tmp_path):
    figures, rows = bundle_run
    ids = [json.loads((BUNDLES / n).read_text())["entry"][0]["resource"]["id"] for n in BUNDLE_NAMES]
    text = "\n".join(",".join(r.values()) for r in rows)

    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 48
    assert sorted(r["patient"] for r in rows) == sorted(patient_key(i, False) for i in ids)
    assert not any(i in text for i in ids)
    assert not any(n.split("_")[0] in text for n in BUNDLE_NAMES)
    assert sum(int(r["cards"]) for r in rows) == figures["cards"]
    assert Counter(rule for r in rows for rule in r["rules"].split(";") if rule) == Counter(figures["findings_by_rule"])
    assert sum(figures["cards_per_patient_histogram"].values()) == 48

    code, _, _ = evaluate(capsys, str(BUNDLES), *WHAT_IF, "--workers", "1", "--show-ids",
                          "--parquet", str(tmp_path / "ids.parquet"))
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "ids.parquet").to_pylist()
    assert code == 0
    assert sorted(r["patient"] for r in table) == sorted(ids)
    assert sorted(r["file"] for r in table) == BUNDLE_NAMES
    assert all(isinstance(r["rules"], list) for r in table)


def test_several_hooks_give_a_row_each_and_figures_per_hook(capsys, tmp_path, knowledge):
    """One chart as NDJSON, called on patient-view and on order-select with the case's draft order."""
    case = case_with(knowledge, "order-select")
    write_ndjson(tmp_path, build_resources(knowledge, case, "hooks-patient", date.fromisoformat(DAY)).values())
    rxnorm = str(case.chart["draft_orders"][0]["rxnorm"])

    code, figures, err = evaluate(capsys, str(tmp_path), "--today", DAY, "--quiet", "--json", "--hook",
                                  "patient-view", "--hook", "order-select", "--draft-order", rxnorm,
                                  "--csv", str(tmp_path / "rows.csv"))

    with (tmp_path / "rows.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0, err
    assert [r["hook"] for r in rows] == ["order-select", "patient-view"]
    assert sorted(figures["by_hook"]) == ["order-select", "patient-view"]
    assert case.rule in figures["by_hook"]["order-select"]["findings_by_rule"]
    assert case.rule in rows[0]["rules"].split(";")
    assert figures["patients"] == 1
    assert figures["cards"] == sum(int(r["cards"]) for r in rows)


def test_a_malformed_ndjson_line_is_named_by_file_and_line(capsys, tmp_path):
    (tmp_path / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "p1"}\n')
    (tmp_path / "Condition.ndjson").write_text(
        '{"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}\n\n{"resourceType": \n')

    code, figures, err = evaluate(capsys, str(tmp_path), "--today", DAY, "--quiet", "--json")

    assert code == 2
    assert figures == {}
    assert "Condition.ndjson:3: not a JSON line" in err
    assert "Traceback" not in err


def test_on_dask_a_malformed_line_in_a_later_byte_range_is_named_by_file_and_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_RANGE_BYTES", 64)
    lines = [json.dumps({"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": "Patient/p1"}})
             for i in range(9)]
    lines[6] = '{"resourceType": "Condition", "id": '
    (tmp_path / "Condition.ndjson").write_text("\n".join(lines) + "\n")

    code, _, err = evaluate(capsys, str(tmp_path), "--today", DAY, "--quiet", "--json", "--engine", "dask",
                            "--workers", "1")

    assert code == 2
    assert "Condition.ndjson:7: not a JSON line" in err and "Traceback" not in err


def test_a_json_line_that_is_no_resource_is_named_too(capsys, tmp_path):
    (tmp_path / "Observation.ndjson").write_text('[1, 2]\n')

    code, _, err = evaluate(capsys, str(tmp_path), "--today", DAY, "--quiet", "--json", "--workers", "1")

    assert code == 2 and "Observation.ndjson:1: not a FHIR resource" in err


def test_resources_naming_no_patient_are_counted_and_the_rest_evaluated(capsys, tmp_path, knowledge):
    case = case_with(knowledge, "patient-view")
    resources = build_resources(knowledge, case, "the-patient", date.fromisoformat(DAY))
    write_ndjson(tmp_path, [*resources.values(), [
        {"resourceType": "Condition", "id": "nobody"},
        {"resourceType": "Observation", "id": "orphan", "subject": {"reference": "Group/1"}},
        {"resourceType": "Observation", "id": "lost", "subject": {"reference": "Patient/x"}}]])

    code, figures, err = evaluate(capsys, str(tmp_path), "--today", DAY, "--quiet", "--json")

    assert code == 1  # Patient/x has resources but no Patient resource
    assert figures["input"]["resources_without_patient"] == {"Condition": 1, "Observation": 1}
    assert figures["patients"] == 1
    assert case.rule in figures["findings_by_rule"]
    assert list(figures["failed_files"]) == [f"Patient/{patient_key('x', False)}"]
    assert "resources naming no patient, left out: Condition 1, Observation 1" in err
    assert "Traceback" not in err


def write_ndjson(folder: Path, groups: Iterable[Iterable[dict]]) -> None:
    """Resources appended to <Type>.ndjson in the folder, one per line."""
    for group in groups:
        for resource in group:
            with (folder / f"{resource['resourceType']}.ndjson").open("a", encoding="utf-8") as out:
                out.write(json.dumps(resource) + "\n")


@needs_bundles
def test_export_ndjson_writes_copies_with_new_ids_and_references_to_match(capsys, tmp_path):
    code = main(["export-ndjson", str(BUNDLES / BUNDLE_NAMES[0]), "--out", str(tmp_path), "--copies", "2"])

    out, _ = capsys.readouterr()
    patients = [json.loads(line) for line in (tmp_path / "Patient.ndjson").read_text().splitlines()]
    original = json.loads((BUNDLES / BUNDLE_NAMES[0]).read_text())["entry"][0]["resource"]["id"]
    conditions = [json.loads(line) for line in (tmp_path / "Condition.ndjson").read_text().splitlines()]
    assert code == 0 and "2 patient(s) from 1 Bundle(s)" in out
    assert len({p["id"] for p in patients}) == 2 and original not in {p["id"] for p in patients}
    assert {c["subject"]["reference"] for c in conditions} == {f"Patient/{p['id']}" for p in patients}
    assert len({c["id"] for c in conditions}) == len(conditions)  # a copy's resources have new ids too


def test_export_ndjson_refuses_a_file_that_is_no_bundle(capsys, tmp_path):
    (tmp_path / "x.json").write_text('{"resourceType": "Patient", "id": "p"}')

    code = main(["export-ndjson", str(tmp_path / "x.json"), "--out", str(tmp_path / "out")])

    assert code == 2 and "x.json: not a FHIR Bundle" in capsys.readouterr().err


@needs_bundles
def test_broken_knowledge_found_in_a_worker_ends_the_run_with_its_problems(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPASM_CDS_KNOWLEDGE_DIR", str(tmp_path))  # no cards/, no mappings/

    code, figures, err = evaluate(capsys, str(BUNDLES), "--quiet", "--json", "--workers", "2")

    assert code == 2 and figures == {}
    assert "knowledge has" in err and "problem(s)" in err and "Traceback" not in err


def medication_case(knowledge):
    """A patient-view case that must give its card from a coded MedicationRequest."""
    for case in knowledge.cases:
        if case.hook == "patient-view" and case.expect == "card" and not case.chart.get("unavailable"):
            requests = [r for r in build_resources(knowledge, case, "p", date.fromisoformat(DAY))
                        .get("medication-requests", ()) if r["resourceType"] == "MedicationRequest"]
            if requests and all("coding" in (r.get("medicationCodeableConcept") or {}) for r in requests):
                return case
    pytest.fail("no case gives a card from a coded MedicationRequest; the test needs one")


def test_a_shared_medication_resource_is_joined_to_the_requests_naming_it_locally_and_on_dask(capsys, tmp_path,
                                                                                           knowledge):
    """As a Bulk export has it: the drug in Medication.ndjson, the request naming it by medicationReference."""
    case = medication_case(knowledge)
    resources = build_resources(knowledge, case, "med-patient", date.fromisoformat(DAY))
    (tmp_path / "inline").mkdir()
    write_ndjson(tmp_path / "inline", resources.values())
    medications = []
    requests = [r for r in resources["medication-requests"] if r["resourceType"] == "MedicationRequest"]
    for i, request in enumerate(requests):
        concept = request.pop("medicationCodeableConcept")
        medications.append({"resourceType": "Medication", "id": f"m{i}", "code": concept})
        request["medicationReference"] = {"reference": f"Medication/m{i}"}
    (tmp_path / "shared").mkdir()
    write_ndjson(tmp_path / "shared", [*resources.values(), medications])

    inline = evaluate(capsys, str(tmp_path / "inline"), "--today", DAY, "--quiet", "--json", "--workers", "1")[1]
    local = evaluate(capsys, str(tmp_path / "shared"), "--today", DAY, "--quiet", "--json", "--workers", "1")[1]
    dask = evaluate(capsys, str(tmp_path / "shared"), "--today", DAY, "--quiet", "--json", "--engine", "dask",
                    "--workers", "1")[1]

    assert case.rule in inline["findings_by_rule"]
    assert burden(local) == burden(dask) == burden(inline)
    assert local["input"]["medications_shared"] == dask["input"]["medications_shared"] == len(medications)
    assert dask["input"]["resources_by_type"]["Medication"] == len(medications)


def test_the_html_report_escapes_what_the_data_say():
    from cds_service.population.html import report_html
    from cds_service.population.patients import PatientRow
    from cds_service.population.rows import figures

    hostile = "<script>alert(1)</script>"
    row = PatientRow(patient="k1", hook="patient-view", cards=0, unrecognised_codes=(hostile,),
                     unread_units=(("potassium", hostile),), source="f")
    page = report_html(figures([row], {"hooks": [hostile], "today": DAY}, {"format": "ndjson"}), f"t {hostile}")

    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # title, settings, two tables
    assert page.count("<svg") == 3  # cards per patient, the code, the unit


@needs_bundles
def test_a_folder_of_bundles_on_dask_gives_the_rows_of_the_local_run(capsys, bundle_run, tmp_path):
    code, figures, err = evaluate(capsys, str(BUNDLES), *WHAT_IF, "--engine", "dask", "--workers", "2",
                                  "--csv", str(tmp_path / "rows.csv"))

    with (tmp_path / "rows.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0, err
    assert burden(figures) == burden(bundle_run[0])
    assert rows == bundle_run[1]
