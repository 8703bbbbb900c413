"""The RxNorm roll-up table: the RRF reader on a made-up release, the curated code lists, the committed table (built
reproducibly from its inputs) and the command that builds it."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cds_service.cli import main as cli
from cds_service.knowledge.rxnorm_table import CODES_HEADER, HEADER, Row, read_rows
from cds_service.tools.rxnorm_build import build, merge, read_release

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "mappings" / "rxnorm" / "product-ingredient.tsv"
RELEASE = Path(__file__).parent / "rxnorm-release"
WANTED = {"tizanidine", "ciprofloxacin", "oxycodone"}


@pytest.fixture(scope="module")
def release_rows() -> dict[str, Row]:
    return {row.rxcui: row for row in build([(RELEASE, "RxNorm fixture")], [], WANTED)}


@pytest.mark.parametrize(("rxcui", "tty", "ingredients", "dose_form"), [
    ("9000001", "IN", ("tizanidine",), ""),
    ("9000002", "PIN", ("tizanidine",), ""),
    ("9000003", "BN", ("tizanidine",), "Oral Tablet"),
    ("9000004", "SCDC", ("tizanidine",), ""),
    ("9000005", "SCD", ("tizanidine",), "Oral Tablet"),
    ("9000006", "SBDC", ("tizanidine",), ""),
    ("9000007", "SBD", ("tizanidine",), "Oral Tablet"),
    ("9000009", "GPCK", ("tizanidine",), "Oral Tablet"),
    ("9000012", "SCD", ("ciprofloxacin",), "Ophthalmic Solution"),
    ("9000022", "PIN", ("oxycodone",), ""),
    ("9000023", "SCDC", ("oxycodone",), ""),
    ("9000025", "SCD", ("acetaminophen", "oxycodone"), "Oral Tablet"),
    ("9000026", "MIN", ("acetaminophen", "oxycodone"), ""),
], ids=lambda v: v if isinstance(v, str) and v.startswith("9") else None)
def test_release_rolls_every_term_type_up_to_ingredients(release_rows, rxcui, tty, ingredients, dose_form):
    row = release_rows[rxcui]
    assert (row.tty, row.ingredients, row.dose_form) == (tty, ingredients, dose_form)
    assert row.source == "RxNorm fixture"


def test_release_keeps_only_wanted_ingredients_and_rxnorm_atoms(release_rows):
    assert "9000032" not in release_rows  # lisinopril: no concept names it
    assert "9000021" not in release_rows  # acetaminophen alone is not wanted; inside the combination it is kept
    assert release_rows["9000005"].display == "tizanidine 4 MG Oral Tablet"  # the RXNORM atom, not MTHSPL's
    every = {row.rxcui: row for row in read_release(RELEASE, "x")}
    assert every["9000005"].ingredients == ("tizanidine",)  # MTHSPL's relationship to lisinopril is ignored


def test_release_row_with_too_few_fields_names_file_and_line(tmp_path):
    (tmp_path / "RXNCONSO.RRF").write_text("1|ENG|\n", encoding="utf-8")
    (tmp_path / "RXNREL.RRF").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"RXNCONSO.RRF:1: 3 fields"):
        read_release(tmp_path, "x")


def test_merge_refuses_two_inputs_that_disagree_on_ingredients():
    one = Row("1", "SCD", ("a",), "Oral Tablet", "a 1 MG Oral Tablet", "x")
    other = Row("1", "SCD", ("b",), "Oral Tablet", "b 1 MG Oral Tablet", "y")
    with pytest.raises(ValueError, match="rxcui 1"):
        merge([one, other])


def test_merge_joins_sources_and_fills_in_a_dose_form():
    one = Row("1", "SCD", ("a",), "", "a 1 MG Oral Tablet", "x")
    other = Row("1", "SCD", ("a",), "Oral Tablet", "a 1 MG Oral Tablet", "y")
    (row,) = merge([one, other])
    assert (row.dose_form, row.source) == ("Oral Tablet", "x;y")


def test_code_list_with_a_bad_row_names_file_and_line(tmp_path):
    path = tmp_path / "codes.tsv"
    path.write_text("\t".join(CODES_HEADER) + "\n" + "12\tSCD\tx\tB\t\tsrc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"codes.tsv:2: ingredients 'B'"):
        read_rows(path, CODES_HEADER)


def test_command_builds_a_table_the_service_reads(tmp_path):
    concepts = tmp_path / "mappings" / "medications"
    concepts.mkdir(parents=True)
    (concepts / "tizanidine.yaml").write_text("id: tizanidine\ningredients: [tizanidine]\n", encoding="utf-8")
    out = tmp_path / "table.tsv"
    code = cli(["terminology", "build", "--rxnorm", str(RELEASE), "--release", "RxNorm fixture",
                "--knowledge-dir", str(tmp_path), "--out", str(out)])
    assert code == 0
    rows = {row.rxcui: row for row in read_rows(out)}
    assert set(rows) == {"9000001", "9000002", "9000003", "9000004", "9000005", "9000006", "9000007", "9000009"}
    assert "# generator: spasm-cds terminology build --rxnorm" in out.read_text(encoding="utf-8")


def test_committed_table_is_rebuilt_byte_for_byte_from_its_inputs(tmp_path, monkeypatch):
    text = TABLE.read_text(encoding="utf-8")
    generator = next(line for line in text.splitlines() if line.startswith("# generator: "))
    argv = shlex.split(generator.removeprefix("# generator: spasm-cds "))
    out = argv.index("--out")
    argv[out + 1] = str(tmp_path / "rebuilt.tsv")
    monkeypatch.chdir(REPO)
    assert cli(argv) == 0
    rebuilt = (tmp_path / "rebuilt.tsv").read_text(encoding="utf-8").replace(str(tmp_path / "rebuilt.tsv"),
                                                                              str(TABLE.relative_to(REPO)))
    assert rebuilt == text


def test_committed_table_header_and_rows_are_valid():
    rows = read_rows(TABLE, HEADER)
    assert len(rows) > 200
    keys = [("|".join(r.ingredients), r.tty, int(r.rxcui)) for r in rows]
    assert keys == sorted(keys)


def test_the_committed_table_is_read_with_one_copy_of_each_repeated_value():
    rows = read_rows(TABLE)
    by_value: dict[object, set[int]] = {}
    for row in rows:
        for value in (row.tty, row.dose_form, row.source, row.ingredients, *row.ingredients):
            by_value.setdefault(value, set()).add(id(value))
    assert len(rows) > 1000
    assert len(by_value) < len(rows)  # values do repeat across the table
    assert [value for value, copies in by_value.items() if len(copies) > 1] == []
