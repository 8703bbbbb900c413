"""The RxNorm product → ingredient table: the committed TSV, its loader and its generator."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service.knowledge.rxnorm_table import (
    CODE_RE,
    HEADER,
    Row,
    main,
    merge,
    parse_display,
    read_rows,
    read_table,
)

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "mappings" / "rxnorm" / "product-ingredient.tsv"
EXTRA = REPO / "mappings" / "rxnorm" / "extra-products.tsv"
SHARED = REPO.parent / "shared"
FACTS = SHARED / "clinical-facts.md"
SYNTHEA_README = SHARED / "synthea" / "README.md"
needs_shared = pytest.mark.skipif(not FACTS.is_file(), reason=f"{SHARED} is not present")


def data_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_committed_table_parses_with_read_table():
    table = read_table(TABLE)
    assert len(table) > 100
    assert all(CODE_RE.match(code) and names for code, names in table.items())


def test_committed_table_has_provenance_header():
    comments = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    text = "\n".join(comments)
    assert "python -m cds_service.knowledge.rxnorm_table" in text
    assert re.search(r"sha256=[0-9a-f]{64}", text)
    assert re.search(r"generated: \d{4}-\d{2}-\d{2}", text)


def test_committed_table_is_sorted_by_ingredient_then_code():
    rows = read_rows(TABLE)
    keys = [("|".join(r.ingredients), int(r.rxcui)) for r in rows]
    assert keys == sorted(keys)


def test_every_synthea_extra_code_resolves_to_one_ingredient():
    table = read_table(TABLE)
    synthea_rows = [row for row in read_rows(EXTRA) if "synthea" in row.source.lower()]
    assert synthea_rows
    for row in synthea_rows:
        assert table[row.rxcui] == row.ingredients
        assert len(table[row.rxcui]) == 1


@needs_shared
def test_every_rxnorm_code_in_the_synthea_readme_is_in_the_table():
    table = read_table(TABLE)
    codes = re.findall(r"^\| (\d{1,8}) \|", SYNTHEA_README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert codes
    assert [code for code in codes if len(table.get(code, ())) != 1] == []


@pytest.mark.parametrize(
    "display",
    [
        "examplinol 5 MG / sampletide 10 MG Oral Tablet",
        "examplinol 5 MG / sampletide 10 MG Oral Tablet [Brandname]",
        "10 ML examplinol 1 MG/ML / sampletide 2 MG/ML Injection",
    ],
)
def test_multi_ingredient_display_yields_two_ingredients(display):
    assert parse_display(display) == (["examplinol", "sampletide"], True)


def test_qualifiers_and_quantities_are_not_ingredients():
    assert parse_display("Once-Daily examplinol 300 MG Oral Tablet")[0] == ["examplinol"]
    assert parse_display("NDA000001 200 ACTUAT Examplinol 0.09 MG/ACTUAT Metered Dose Inhaler")[0] == ["examplinol"]
    assert parse_display("examplinol") == (["examplinol"], False)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("123\tSCD\texamplinol\texamplinol 5 MG Oral Tablet", "columns"),
        ("12a\tSCD\texamplinol\texamplinol 5 MG Oral Tablet\tsomewhere", "rxcui"),
        ("123456789\tSCD\texamplinol\texamplinol 5 MG Oral Tablet\tsomewhere", "rxcui"),
    ],
    ids=["wrong-column-count", "non-numeric-code", "code-too-long"],
)
def test_bad_line_raises_value_error_with_line_number(tmp_path, bad_line, message):
    path = tmp_path / "table.tsv"
    good = "1\tIN\texamplinol\texamplinol\tsomewhere"
    path.write_text("# comment\n" + "\t".join(HEADER) + f"\n{good}\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf":4: .*{message}"):
        read_table(path)


def test_wrong_header_raises_value_error_with_line_number(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_text("# comment\nrxcui\tingredients\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r":2: header"):
        read_table(path)


def test_same_code_with_different_ingredients_fails_loudly():
    rows = [Row("1", "SCD", ("examplinol",), "a", "x"), Row("1", "SCD", ("sampletide",), "b", "y")]
    with pytest.raises(ValueError, match="rxcui 1"):
        merge(rows)


def test_same_code_twice_is_merged_with_both_sources():
    rows = [Row("1", "IN", ("examplinol",), "examplinol", "x"), Row("1", "IN", ("examplinol",), "examplinol", "y")]
    assert merge(rows) == [Row("1", "IN", ("examplinol",), "examplinol", "x;y")]


@needs_shared
def test_regenerating_from_shared_facts_gives_the_committed_rows(tmp_path):
    out = tmp_path / "product-ingredient.tsv"
    assert main(["--facts", str(FACTS), "--extra", str(EXTRA), "--out", str(out)]) == 0
    assert data_lines(out) == data_lines(TABLE)


@needs_shared
def test_codes_the_fact_sheet_marks_unverified_are_not_ingredient_rows():
    text = FACTS.read_text(encoding="utf-8")
    cells = [cell for line in text.splitlines() if line.startswith("|") for cell in line.split("|")]
    unverified = set(re.findall(r"\b(\d{1,8})\?", text))
    unverified |= {code for cell in cells if "UNVERIFIED (recall)" in cell for code in re.findall(r"\b\d{3,8}\b", cell)}
    assert unverified
    in_rows = {row.rxcui for row in read_rows(TABLE) if row.tty == "IN"}
    assert in_rows & unverified == set()
