"""The RxNorm roll-up table (product, salt and brand codes to ingredient names, with each product's dose form), as
read at start-up: `read_rows` parses and checks mappings/rxnorm/product-ingredient.tsv (and the curated code lists).
The table is written by `spasm-cds terminology build` (cds_service/tools/rxnorm_build.py), never at run time."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

HEADER = ("rxcui", "tty", "ingredients", "dose_form", "display", "source")
CODES_HEADER = ("rxcui", "tty", "name", "ingredients", "dose_form", "source")
CODE_RE = re.compile(r"[0-9]{1,8}")
T = TypeVar("T")
TTYS = frozenset({"IN", "PIN", "MIN", "BN", "SCDC", "SBDC", "SCD", "SBD", "GPCK", "BPCK"})


@dataclass(frozen=True, slots=True)  # slots: thousands are held by every serving process
class Row:
    """One RxNorm code and the ingredient names it rolls up to, with its dose form (products) and provenance."""

    rxcui: str
    tty: str
    ingredients: tuple[str, ...]
    dose_form: str
    display: str
    source: str

    def line(self) -> str:
        return "\t".join((self.rxcui, self.tty, "|".join(self.ingredients), self.dose_form, self.display,
                          self.source))


def read_rows(path: str | Path, header: tuple[str, ...] = HEADER) -> list[Row]:
    """Parse and validate every row of a roll-up table (or, with CODES_HEADER, a curated code list); raises
    ValueError naming the file and line. `#` lines are comments."""
    rows: list[Row] = []
    seen: set[str] = set()
    # one string object per distinct term type, dose form, source and ingredient list: the table repeats them on
    # thousands of rows, and a copy per row cost every serving process ~2.7 MiB with the slots (issue 16)
    shared: dict[Any, Any] = {}

    def once(value: T) -> T:
        return shared.setdefault(value, value)
    header_seen = False
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.rstrip("\n").rstrip("\r")
            if not text.strip() or text.startswith("#"):
                continue
            fields = text.split("\t")
            if not header_seen:
                if tuple(fields) != header:
                    raise ValueError(f"{path}:{line_no}: header must be {chr(9).join(header)!r}, got {text!r}")
                header_seen = True
                continue
            where = f"{path}:{line_no}"
            if len(fields) != len(header):
                raise ValueError(f"{where}: expected {len(header)} tab-separated columns, got {len(fields)}")
            values = dict(zip(header, (f.strip() for f in fields), strict=True))
            row = _row(values["rxcui"], values["tty"], values["ingredients"], values["dose_form"],
                       values.get("display") or values.get("name", ""), values["source"], where)
            row = Row(row.rxcui, once(row.tty), once(tuple(once(n) for n in row.ingredients)), once(row.dose_form),
                      row.display, once(row.source))
            if row.rxcui in seen:
                raise ValueError(f"{where}: rxcui {row.rxcui} appears twice")
            seen.add(row.rxcui)
            rows.append(row)
    if not header_seen:
        raise ValueError(f"{path}: no header line")
    return rows


def _row(rxcui: str, tty: str, ingredients: str, dose_form: str, display: str, source: str, where: str) -> Row:
    if not CODE_RE.fullmatch(rxcui):
        raise ValueError(f"{where}: rxcui {rxcui!r} does not match {CODE_RE.pattern}")
    if tty not in TTYS:
        raise ValueError(f"{where}: tty {tty!r} is not one of {sorted(TTYS)}")
    names = tuple(ingredients.split("|")) if ingredients else ()
    if not names or any(not n or n != n.lower() or n != n.strip() for n in names):
        raise ValueError(f"{where}: ingredients {ingredients!r} must be |-joined non-empty lowercase names")
    if list(names) != sorted(set(names)):
        raise ValueError(f"{where}: ingredients {ingredients!r} must be sorted alphabetically without repeats")
    if not display or not source:
        raise ValueError(f"{where}: display and source must not be empty")
    return Row(rxcui, tty, names, dose_form, display, source)
