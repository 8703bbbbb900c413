"""The population's rows -> the figures (--json, the HTML report) and the per-patient files (CSV, Parquet).

The figures are the alert-burden report (burden.py) over every patient, each patient's hooks taken together, plus
the settings the run was made with, what the input held, and the same per hook when several were asked for. Rows
carry a hashed patient key, never an id or a file name, unless --show-ids."""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from ..burden import BurdenReport
from .patients import INDICATORS, PatientRow, combined

COLUMNS = ("patient", "hook", "cards", *(f"cards_{i}" for i in INDICATORS), "rules", "missing_data_cards",
           "missing_data", "unrecognised_codes", "medications_by_name_only", "unconvertible_units", "error")
TOP = 15


def figures(rows: Sequence[PatientRow], settings: dict[str, Any], read: dict[str, Any]) -> dict[str, Any]:
    """The report as plain data: the burden figures (as `evaluate FOLDER --json` has always printed), with
    `settings`, `input`, `cards_per_patient_histogram`, `missing_data_kinds` and, for several hooks, `by_hook`."""
    overall = BurdenReport()
    histogram: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    for _, own in _by_patient(rows):
        row = combined(own)
        overall.add_row(row)
        if row.error is None:
            histogram[row.cards] += 1
            kinds.update(row.missing_data)
    result = overall.figures()
    result["cards_per_patient_histogram"] = {str(n): histogram[n] for n in range(max(histogram, default=0) + 1)}
    result["missing_data_kinds"] = dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    result["settings"] = settings
    result["input"] = read
    hooks = sorted({r.hook for r in rows})
    if len(hooks) > 1:
        by_hook = {}
        for hook in hooks:
            report = BurdenReport()
            for r in rows:
                if r.hook == hook:
                    report.add_row(r)
            by_hook[hook] = report.figures()
        result["by_hook"] = by_hook
    return result


def table(rows: Sequence[PatientRow], show_ids: bool) -> Iterator[dict[str, Any]]:
    """One dict per row, COLUMNS (and `file` with --show-ids); list columns as lists."""
    for r in rows:
        indicators = dict(r.indicators)
        record: dict[str, Any] = {
            "patient": r.patient, "hook": r.hook, "cards": r.cards,
            **{f"cards_{i}": indicators.get(i, 0) for i in INDICATORS},
            "rules": sorted(r.rules), "missing_data_cards": r.missing_data_cards,
            "missing_data": list(r.missing_data), "unrecognised_codes": len(r.unrecognised_codes),
            "medications_by_name_only": r.by_name, "unconvertible_units": len(r.unread_units), "error": r.error}
        if show_ids:
            record["file"] = r.source
        yield record


def write_csv(rows: Sequence[PatientRow], path: Path, show_ids: bool) -> None:
    """The rows as CSV (list columns joined with ';', no error as an empty cell)."""
    columns = [*COLUMNS, "file"] if show_ids else list(COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for record in table(rows, show_ids):
            writer.writerow({k: ";".join(v) if isinstance(v, list) else ("" if v is None else v)
                             for k, v in record.items()})


def write_parquet(rows: Sequence[PatientRow], path: Path, show_ids: bool) -> None:
    """The rows as Parquet (pyarrow), list columns as lists of strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("patient", pa.string()), pa.field("hook", pa.string()), pa.field("cards", pa.int32()),
              *(pa.field(f"cards_{i}", pa.int32()) for i in INDICATORS), pa.field("rules", pa.list_(pa.string())),
              pa.field("missing_data_cards", pa.int32()), pa.field("missing_data", pa.list_(pa.string())),
              pa.field("unrecognised_codes", pa.int32()), pa.field("medications_by_name_only", pa.int32()),
              pa.field("unconvertible_units", pa.int32()), pa.field("error", pa.string())]
    if show_ids:
        fields.append(pa.field("file", pa.string()))
    pq.write_table(pa.Table.from_pylist(list(table(rows, show_ids)), schema=pa.schema(fields)), path)


def _by_patient(rows: Sequence[PatientRow]) -> Iterator[tuple[tuple[str, str], list[PatientRow]]]:
    """Rows grouped per patient (rows come sorted by patient key and file)."""
    for key, own in groupby(rows, key=lambda r: (r.patient, r.source)):
        yield key, list(own)
