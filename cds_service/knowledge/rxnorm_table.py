"""Knowledge build step: the fact sheet's RxNorm tables plus a hand-edited extras TSV in, the product → ingredient
roll-up TSV out. `read_table` loads that TSV at start-up (rxcui → ingredient names).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HEADER = ("rxcui", "tty", "ingredients", "display", "source")
CODE_RE = re.compile(r"^[0-9]{1,8}$")
TTYS = frozenset({"IN", "PIN", "MIN", "SCDC", "SBDC", "SCD", "SBD", "GPCK", "BPCK"})
COMMAND = "python -m cds_service.knowledge.rxnorm_table"

# Column headers of the fact sheet's tables (document layout, not clinical content).
PRODUCT_COLUMNS = ["RXCUI", "Display", "VSAC value set(s)", "Synthea module"]
DRUG_COLUMN, INGREDIENT_COLUMN, PAIR_COLUMN = "Drug", "RxNorm IN", "Pair / situation"
NOT_GIVEN = {"", "—", "-", "–"}

_HEADING = re.compile(r"^#{2,3}\s+(?:(?P<num>\d+(?:\.\d+)?)\.?|Appendix (?P<app>[A-Z]):)\s")
_PRODUCT_HEADING = re.compile(r"^\*\*(?P<name>[^*]+)\*\* \((?P<count>\d+)\)$")
_BOLD_LINE = re.compile(r"^\*\*[^*]+\*\*(?: \(\d+\))?$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_BRAND = re.compile(r"\s*\[[^\]]+\]\s*$")
_AMOUNT = re.compile(r"^\d+(?:\.\d+)?$")
_TAG = re.compile(r"\[([^\]]*)\]")
_NOT_VERIFIED = re.compile(r"UNVERIFIED|\?|recall|not verified|not looked up", re.IGNORECASE)
_BOLD_CODES = re.compile(r"\*\*(\d{1,8}(?:\s*/\s*\d{1,8})*)\*\*")
_NAMED_BOLD_CODE = re.compile(r"([a-z][a-z\- ]*?)\s+\*\*(\d{1,8})\*\*")
_MENTION = re.compile(r"(?P<name>[A-Za-z][A-Za-z\-]*(?: [A-Za-z][A-Za-z\-]*)*)\s+\(?(?P<code>\d{1,8})(?P<q>\?)?")
_LEADING_WORDS = {"and", "or", "other", "with", "also", "plus", "e.g.", "incl"}
# A number followed by a word or a colon is a dose, a duration or a year, not a code.
_QUANTITY_AFTER = re.compile(r"\s*(?::|(?!(?:and|or)\b)[a-z])")


@dataclass(frozen=True)
class Row:
    """One table row: an RxNorm code and the ingredient names it rolls up to."""

    rxcui: str
    tty: str
    ingredients: tuple[str, ...]
    display: str
    source: str

    def line(self) -> str:
        return "\t".join((self.rxcui, self.tty, "|".join(self.ingredients), self.display, self.source))


@dataclass
class Report:
    """What the build doubted or left out; printed on stderr, never written to the table."""

    doubtful: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Table:
    section: str
    label: str | None
    line_no: int
    header: list[str]
    rows: list[tuple[int, list[str]]]


def read_table(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Load a roll-up TSV as rxcui → ingredient names; raises ValueError naming the file and line."""
    return {row.rxcui: row.ingredients for row in read_rows(path)}


def read_rows(path: str | Path) -> list[Row]:
    """Parse and validate every row of a roll-up or extras TSV (`#` lines are comments)."""
    rows: list[Row] = []
    seen: set[str] = set()
    header_seen = False
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.rstrip("\n").rstrip("\r")
            if not text.strip() or text.startswith("#"):
                continue
            fields = text.split("\t")
            if not header_seen:
                if tuple(fields) != HEADER:
                    raise ValueError(f"{path}:{line_no}: header must be {chr(9).join(HEADER)!r}, got {text!r}")
                header_seen = True
                continue
            row = _row_from_fields(fields, f"{path}:{line_no}")
            if row.rxcui in seen:
                raise ValueError(f"{path}:{line_no}: rxcui {row.rxcui} appears twice")
            seen.add(row.rxcui)
            rows.append(row)
    if not header_seen:
        raise ValueError(f"{path}: no header line")
    return rows


def _row_from_fields(fields: list[str], where: str) -> Row:
    if len(fields) != len(HEADER):
        raise ValueError(f"{where}: expected {len(HEADER)} tab-separated columns, got {len(fields)}")
    rxcui, tty, ingredients, display, source = (f.strip() for f in fields)
    if not CODE_RE.match(rxcui):
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
    return Row(rxcui, tty, names, display, source)


def iter_tables(text: str) -> Iterator[Table]:
    """Yield each markdown table with its section number and the bold line just above it."""
    section, label = "", None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        heading = _HEADING.match(line)
        if heading:
            section = heading["num"] or f"App.{heading['app']}"
            label = None
        elif _BOLD_LINE.match(line):
            label = line
        elif line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            header = _cells(line)
            start, i = i + 1, i + 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append((i + 1, _cells(lines[i].strip())))
                i += 1
            yield Table(section, label, start, header, rows)
            label = None
            continue
        i += 1


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line.strip().strip("|"))]


def parse_display(display: str) -> tuple[list[str], bool]:
    """Ingredient names (lowercased) named in an RxNorm-style display, and whether it states a strength."""
    body = _BRAND.sub("", display).strip()
    names: list[str] = []
    has_strength = False
    for segment in body.split(" / "):
        tokens = segment.split()
        pairs = [i for i in range(len(tokens) - 1) if _AMOUNT.match(tokens[i]) and _is_unit(tokens[i + 1])]
        if not pairs:
            names.append(segment.strip().lower())
            continue
        has_strength = True
        # The strength is the last amount; anything earlier (10 ML, 24 HR, 200 ACTUAT) is a quantity or release factor.
        end = pairs[-1]
        start = end
        while start > 0 and _is_name_token(tokens[start - 1]):
            start -= 1
        run = tokens[start:end]
        # RxNorm writes ingredient names in lowercase; capitalised words before them are qualifiers (Once-Daily).
        # Displays copied from older data capitalise the whole name, so keep everything then.
        if any(t.islower() for t in run):
            while run and not run[0].islower():
                run = run[1:]
        names.append(" ".join(run).lower())
    return names, has_strength


def _is_unit(token: str) -> bool:
    return not token[0].isdigit() and not any(c.islower() for c in token)


def _is_name_token(token: str) -> bool:
    return not token[0].isdigit() and any(c.islower() for c in token)


def reduce_to_known(name: str, known: Iterable[str]) -> tuple[str, str]:
    """Longest known ingredient that begins `name` word by word, and the words left over (a salt or ester)."""
    known = set(known)
    words = name.split()
    for n in range(len(words), 0, -1):
        candidate = " ".join(words[:n])
        if candidate in known:
            return candidate, " ".join(words[n:])
    return name, ""


def parse_products(text: str, known: set[str], report: Report) -> list[Row]:
    """Rows of the appendix product tables, with ingredients parsed from each display."""
    rows: list[Row] = []
    stripped: dict[str, set[str]] = {}
    for table in iter_tables(text):
        if table.header != PRODUCT_COLUMNS or not table.section.startswith("App."):
            continue
        heading = _PRODUCT_HEADING.match(table.label or "")
        if not heading:
            report.doubtful.append(f"line {table.line_no}: product table without a '**name** (N)' heading; skipped")
            continue
        expected = heading["name"].strip().lower()
        if int(heading["count"]) != len(table.rows):
            report.doubtful.append(
                f"line {table.line_no}: heading {expected!r} says {heading['count']} rows, table has {len(table.rows)}")
        for line_no, cells in table.rows:
            if len(cells) != len(PRODUCT_COLUMNS):
                report.doubtful.append(f"line {line_no}: {len(cells)} cells, expected {len(PRODUCT_COLUMNS)}; skipped")
                continue
            rxcui, display, vsac, synthea = cells
            names, has_strength = parse_display(display)
            ingredients = []
            for name in names:
                ingredient, rest = reduce_to_known(name, known)
                if rest:
                    stripped.setdefault(rest, set()).add(ingredient)
                ingredients.append(ingredient)
            ingredients = sorted(set(ingredients))
            if not all(ingredients):
                report.doubtful.append(f"line {line_no}: {rxcui} {display!r}: no ingredient name found; left out")
                continue
            if expected not in ingredients:
                report.doubtful.append(
                    f"line {line_no}: {rxcui} {display!r}: heading {expected!r} not among parsed {ingredients}")
            unknown = [n for n in ingredients if n not in known]
            if unknown:
                report.doubtful.append(f"line {line_no}: {rxcui} {display!r}: unrecognised ingredient {unknown}")
            if _BRAND.search(display):
                tty = "SBD"
            elif not has_strength:
                tty = "IN" if len(ingredients) == 1 else "MIN"
            else:
                tty = "SCD"
            rows.append(Row(rxcui, tty, tuple(ingredients), display, _product_source(vsac, synthea)))
    for rest, bases in sorted(stripped.items()):
        bases_text = ", ".join(sorted(bases))
        report.notes.append(f"word(s) {rest!r} after a known ingredient treated as salt/ester of: {bases_text}")
    return rows


def _product_source(vsac: str, synthea: str) -> str:
    parts = [f"VSAC:{v.strip()}" for v in vsac.split(";") if v.strip() not in NOT_GIVEN]
    if synthea.strip() not in NOT_GIVEN:
        parts.append(f"Synthea:{synthea.strip()}")
    return ";".join(parts) or "clinical-facts App.A"


def parse_verified_ingredients(text: str, report: Report) -> list[Row]:
    """IN rows for the ingredient codes tagged [V] in the section 2 drug tables and the section 3 interaction table."""
    rows: list[Row] = []
    for table in iter_tables(text):
        if table.section.startswith("2.") and DRUG_COLUMN in table.header and INGREDIENT_COLUMN in table.header:
            rows += _drug_table_rows(table, report)
        elif table.section == "3" and table.header[:1] == ["#"] and PAIR_COLUMN in table.header:
            rows += _interaction_rows(table, report)
    return rows


def _drug_table_rows(table: Table, report: Report) -> list[Row]:
    rows: list[Row] = []
    drug_at, code_at = table.header.index(DRUG_COLUMN), table.header.index(INGREDIENT_COLUMN)
    for line_no, cells in table.rows:
        drug, cell = cells[drug_at], cells[code_at]
        if not re.search(r"\d", cell):
            continue
        where = f"§{table.section} line {line_no}"
        tags = _TAG.findall(cell)
        if _NOT_VERIFIED.search(cell) or not any(_is_verified_tag(t) for t in tags):
            report.left_out.append(f"{where}: {drug} — {cell} (not tagged [V])")
            continue
        source = f"clinical-facts §{table.section} {_tag_source(next(t for t in tags if _is_verified_tag(t)))}".strip()
        named = _NAMED_BOLD_CODE.findall(_TAG.sub("", cell))
        if named:
            pairs = [(n.strip(), c) for n, c in named]
        else:
            codes = [c for group in _BOLD_CODES.findall(cell) for c in re.split(r"\s*/\s*", group)]
            names = [re.sub(r"\s*\([^)]*\)", "", n).strip() for n in drug.split(" / ")]
            if len(codes) != len(names):
                report.doubtful.append(f"{where}: {len(names)} names, {len(codes)} codes in {drug!r}; skipped")
                continue
            pairs = list(zip(names, codes))
        for name, code in pairs:
            rows.append(Row(code, "IN", (name.lower(),), name, source))
    return rows


def _interaction_rows(table: Table, report: Report) -> list[Row]:
    rows: list[Row] = []
    pair_at = table.header.index(PAIR_COLUMN)
    for line_no, cells in table.rows:
        number = cells[0]
        cell = cells[pair_at].replace("**", "")
        for mention in _MENTION.finditer(cell):
            words = mention["name"].split()
            while words and words[0].lower() in _LEADING_WORDS:
                words = words[1:]
            name = " ".join(words).lower()
            code = mention["code"]
            if not mention["q"] and _QUANTITY_AFTER.match(cell, mention.end()):
                continue
            where = f"§3 #{number} (line {line_no})"
            if mention["q"]:
                report.left_out.append(f"{where}: {name} {code}? (UNVERIFIED)")
                continue
            tag = _tag_after(cell, mention.end())
            if tag is None or not _is_verified_tag(tag) or _excepted(tag, name):
                report.left_out.append(f"{where}: {name} {code} (tag {tag!r}, not [V])")
                continue
            rows.append(Row(code, "IN", (name,), name, f"clinical-facts §3 #{number}"))
    return rows


def _tag_after(cell: str, pos: int) -> str | None:
    """The first [tag] after pos in the same parenthesised group, before a '+' or ';' that starts another item."""
    depth = 0
    i = pos
    while i < len(cell):
        ch = cell[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and ch in "+;":
            return None
        elif depth == 0 and ch == "[":
            end = cell.find("]", i)
            return cell[i + 1:end] if end > i else None
        i += 1
    return None


def _is_verified_tag(tag: str) -> bool:
    return re.match(r"V(?![A-Za-z/])", tag.strip()) is not None


def _excepted(tag: str, name: str) -> bool:
    match = re.search(r"\bexcept\b(.*)", tag)
    return bool(match) and name in {w.strip().lower() for w in re.split(r",|\band\b", match[1])}


def _tag_source(tag: str) -> str:
    return re.split(r"[,;]", tag.strip()[1:], maxsplit=1)[0].replace('"', "").strip()


def merge(rows: Iterable[Row]) -> list[Row]:
    """One row per rxcui, sources joined; raises ValueError when one code is given different ingredients or tty."""
    merged: dict[str, Row] = {}
    for row in rows:
        old = merged.get(row.rxcui)
        if old is None:
            merged[row.rxcui] = row
            continue
        if (old.ingredients, old.tty) != (row.ingredients, row.tty):
            raise ValueError(
                f"rxcui {row.rxcui}: {old.tty} {old.ingredients} from {old.source!r} "
                f"conflicts with {row.tty} {row.ingredients} from {row.source!r}")
        sources = old.source.split(";") + [s for s in row.source.split(";") if s not in old.source.split(";")]
        merged[row.rxcui] = Row(old.rxcui, old.tty, old.ingredients, old.display, ";".join(sources))
    return sorted(merged.values(), key=lambda r: ("|".join(r.ingredients), int(r.rxcui)))


def check_extras(extras: list[Row], known: set[str], report: Report) -> None:
    """Warn when a hand-edited row's display does not name the ingredients it claims."""
    for row in extras:
        parsed = sorted({reduce_to_known(n, known)[0] for n in parse_display(row.display)[0]})
        if parsed != list(row.ingredients):
            report.doubtful.append(
                f"extras {row.rxcui} {row.display!r}: display parses as {parsed}, row says {list(row.ingredients)}")


def build(facts_path: Path, extra_path: Path, report: Report) -> list[Row]:
    """All rows of the roll-up table, merged and sorted."""
    text = facts_path.read_text(encoding="utf-8")
    verified = parse_verified_ingredients(text, report)
    headings = {m["name"].strip().lower() for m in map(_PRODUCT_HEADING.match, text.splitlines()) if m}
    known = headings | {name for row in verified for name in row.ingredients}
    products = parse_products(text, known, report)
    extras = read_rows(extra_path)
    check_extras(extras, known, report)
    return merge([*products, *verified, *extras])


def render(rows: list[Row], argv: list[str], sources: list[Path], today: datetime.date) -> str:
    """The TSV text: provenance comments, header, rows."""
    lines = [
        "# RxNorm product -> ingredient roll-up for spasm-cds. Generated: do not edit by hand; add codes to",
        "# mappings/rxnorm/extra-products.tsv or fix the fact sheet, then rerun the generator.",
        f"# generator: {COMMAND} {shlex.join(argv)}",
        *(f"# source: {p} sha256={hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sources),
        f"# generated: {today.isoformat()}",
        "# ingredients: RxNorm IN names in lowercase, |-joined alphabetically; salts (PIN) roll up to their IN.",
        "# IN rows: only ingredient codes the fact sheet tags [V]; UNVERIFIED, '?' and recall codes are left out.",
        "\t".join(HEADER),
        *(row.line() for row in rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build the table, write it, and print what was doubted or left out."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--facts", type=Path, required=True, help="clinical-facts.md")
    parser.add_argument("--extra", type=Path, required=True, help="hand-edited extra-products.tsv")
    parser.add_argument("--out", type=Path, required=True, help="TSV to write")
    args = parser.parse_args(argv)
    report = Report()
    try:
        rows = build(args.facts, args.extra, report)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, argv, [args.facts, args.extra], datetime.date.today()), encoding="utf-8")
    for kind, items in (("doubtful", report.doubtful), ("left out", report.left_out), ("note", report.notes)):
        for item in items:
            print(f"{kind}: {item}", file=sys.stderr)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
