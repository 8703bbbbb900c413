"""Knowledge build step (`spasm-cds terminology build`): the RxNorm roll-up table for the ingredients the
medication concepts in mappings/ name. A developer and site tool: the service never imports it.

Inputs are an RxNorm release as NLM ships it (RXNCONSO.RRF and RXNREL.RRF, read with `--rxnorm DIR`) and/or
curated code lists (`--codes FILE`: RxNorm codes carried over from public value sets, with their provenance). Both
become the same rows, so the bundled table and a site's own build from its licensed release are made the same way.
`knowledge/rxnorm_table.read_rows` loads the written table at start-up.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import yaml

from ..knowledge.rxnorm_table import CODES_HEADER, HEADER, TTYS, Row, read_rows

COMMAND = "spasm-cds terminology build"

# RXNREL relationship names, each with its inverse (a release holds both directions; which end is which is read
# from the term types of the two concepts, so the direction of a row never matters).
_FAMILIES = {
    "has_ingredient": "ingredient", "ingredient_of": "ingredient",
    "has_precise_ingredient": "precise", "precise_ingredient_of": "precise",
    "has_ingredients": "ingredient", "ingredients_of": "ingredient",
    "consists_of": "component", "constitutes": "component",
    "has_dose_form": "form", "dose_form_of": "form",
    "tradename_of": "brand", "has_tradename": "brand",
    "contains": "pack", "contained_in": "pack",
    "form_of": "salt", "has_form": "salt",
    "has_part": "part", "part_of": "part",
}
_CONSO_COLUMNS = 18  # RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
_REL_COLUMNS = 16  # RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|DIR|RG|SUPPRESS|CVF


def read_release(folder: Path, source: str) -> list[Row]:
    """Rows for every RxNorm (SAB=RXNORM) concept of a release's RXNCONSO.RRF and RXNREL.RRF (in `folder` or its
    rrf/ subfolder): ingredients reached through the release's own relationships, products' dose forms too."""
    rrf = folder / "rrf" if (folder / "rrf" / "RXNCONSO.RRF").is_file() else folder
    names: dict[str, tuple[str, str]] = {}  # rxcui -> (tty, name); the RXNORM atom of each concept
    for fields in _rrf_lines(rrf / "RXNCONSO.RRF", _CONSO_COLUMNS):
        rxcui, sab, tty, name = fields[0], fields[11], fields[12], fields[14]
        if sab == "RXNORM" and (tty in TTYS or tty == "DF") and rxcui not in names:
            names[rxcui] = (tty, name)
    links: dict[tuple[str, str], set[str]] = defaultdict(set)  # (rxcui, family) -> related rxcuis
    for fields in _rrf_lines(rrf / "RXNREL.RRF", _REL_COLUMNS):
        one, rela, two, sab = fields[0], fields[7], fields[4], fields[10]
        family = _FAMILIES.get(rela)
        if sab != "RXNORM" or family is None or one not in names or two not in names:
            continue
        links[(one, family)].add(two)
        links[(two, family)].add(one)

    def related(rxcui: str, family: str, *ttys: str) -> list[str]:
        return sorted(r for r in links.get((rxcui, family), ()) if names[r][0] in ttys)

    def ingredients(rxcui: str) -> set[str]:
        tty, name = names[rxcui]
        if tty == "IN":
            return {name.lower()}
        if tty in ("PIN", "BN"):
            return {names[r][1].lower() for r in related(rxcui, "salt" if tty == "PIN" else "brand", "IN")}
        if tty == "MIN":
            return {names[r][1].lower() for r in related(rxcui, "part", "IN")}
        if tty in ("SCDC", "SBDC"):
            found = {names[r][1].lower() for r in related(rxcui, "ingredient", "IN")}
            for pin in related(rxcui, "precise", "PIN"):
                found |= ingredients(pin)
            for generic in related(rxcui, "brand", "SCDC") if tty == "SBDC" else ():
                found |= ingredients(generic)
            return found
        if tty in ("SCD", "SBD"):
            found = set()
            for part in related(rxcui, "component", "SCDC", "SBDC"):
                found |= ingredients(part)
            for generic in related(rxcui, "brand", "SCD") if tty == "SBD" else ():
                found |= ingredients(generic)
            return found
        found = set()  # packs: what they contain
        for item in related(rxcui, "pack", "SCD", "SBD"):
            found |= ingredients(item)
        return found

    def dose_form(rxcui: str) -> str:
        tty = names[rxcui][0]
        if tty in ("SCD", "SBD"):
            forms = {names[r][1] for r in related(rxcui, "form", "DF")}
            if not forms and tty == "SBD":
                forms = {dose_form(g) for g in related(rxcui, "brand", "SCD")}
        elif tty in ("GPCK", "BPCK"):
            forms = {dose_form(r) for r in related(rxcui, "pack", "SCD", "SBD")}
        elif tty == "BN":
            forms = {dose_form(r) for r in related(rxcui, "ingredient", "SBD")}
        else:
            return ""
        return forms.pop() if len(forms) == 1 else ""

    rows = []
    for rxcui, (tty, name) in names.items():
        if tty == "DF":
            continue
        found = ingredients(rxcui)
        if found:
            rows.append(Row(rxcui, tty, tuple(sorted(found)), dose_form(rxcui), name, source))
    return rows


def _rrf_lines(path: Path, columns: int) -> Iterable[list[str]]:
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("|")
            if len(fields) < columns:
                raise ValueError(f"{path}:{line_no}: {len(fields)} fields, an RRF row of this file has {columns}")
            yield fields


def concept_ingredients(knowledge_dir: Path) -> set[str]:
    """Every ingredient name the medication concepts of a knowledge folder list."""
    wanted: set[str] = set()
    for path in sorted((knowledge_dir / "mappings" / "medications").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in doc.get("ingredients") or ():
            wanted.add(item["name"] if isinstance(item, dict) else item)
    return wanted


def merge(rows: Iterable[Row]) -> list[Row]:
    """One row per rxcui, sources joined; raises ValueError when one code is given other ingredients or another
    term type by two inputs. A dose form given by one input fills in for another that has none."""
    merged: dict[str, Row] = {}
    for row in rows:
        old = merged.get(row.rxcui)
        if old is None:
            merged[row.rxcui] = row
            continue
        if (old.ingredients, old.tty) != (row.ingredients, row.tty):
            raise ValueError(f"rxcui {row.rxcui}: {old.tty} {old.ingredients} from {old.source!r} conflicts with "
                             f"{row.tty} {row.ingredients} from {row.source!r}")
        if old.dose_form and row.dose_form and old.dose_form != row.dose_form:
            raise ValueError(f"rxcui {row.rxcui}: dose form {old.dose_form!r} from {old.source!r} conflicts with "
                             f"{row.dose_form!r} from {row.source!r}")
        sources = old.source.split(";") + [s for s in row.source.split(";") if s not in old.source.split(";")]
        merged[row.rxcui] = Row(old.rxcui, old.tty, old.ingredients, old.dose_form or row.dose_form, old.display,
                                ";".join(sources))
    return sorted(merged.values(), key=lambda r: ("|".join(r.ingredients), r.tty, int(r.rxcui)))


def build(releases: list[tuple[Path, str]], code_lists: list[Path], wanted: set[str]) -> list[Row]:
    """The table's rows: every code of the inputs that rolls up to at least one wanted ingredient."""
    rows: list[Row] = []
    for folder, label in releases:
        rows += read_release(folder, label)
    for path in code_lists:
        rows += read_rows(path, CODES_HEADER)
    return merge(r for r in rows if wanted & set(r.ingredients))


def render(rows: list[Row], argv: list[str], inputs: list[Path]) -> str:
    """The TSV text: provenance comments (the command and a digest of each input file), header, rows."""
    digests = []
    for path in inputs:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.read_bytes())
        digests.append(f"# input: {path} sha256={digest.hexdigest()}")
    counts: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.tty] += 1
    lines = [
        "# RxNorm roll-up for spasm-cds: product, salt (PIN) and brand (BN) codes to RxNorm ingredient (IN) names,",
        "# with each product's RxNorm dose form. Generated: do not edit by hand; change an input and rerun.",
        f"# generator: {COMMAND} {shlex.join(argv)}",
        *digests,
        "# rows by term type: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())),
        "\t".join(HEADER),
        *(row.line() for row in rows),
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `spasm-cds terminology build`."""
    parser.add_argument("--rxnorm", type=Path, action="append", default=[], metavar="DIR",
                        help="an RxNorm release folder (RXNCONSO.RRF and RXNREL.RRF, or an rrf/ folder holding them)")
    parser.add_argument("--release", action="append", default=[], metavar="LABEL",
                        help="provenance written for each --rxnorm folder, in order (default: the folder's name)")
    parser.add_argument("--codes", type=Path, action="append", default=[], metavar="FILE",
                        help="a curated code list (TSV: " + ", ".join(CODES_HEADER) + ")")
    parser.add_argument("--knowledge-dir", type=Path, default=Path("."),
                        help="folder holding mappings/ (its medication concepts choose the ingredients)")
    parser.add_argument("--out", type=Path, required=True, help="TSV to write")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Build the table, write it, and say how many rows of which kind."""
    if not args.rxnorm and not args.codes:
        print("error: give --rxnorm DIR and/or --codes FILE", file=sys.stderr)
        return 2
    labels = list(args.release) + [f"RxNorm {p.resolve().name}" for p in args.rxnorm[len(args.release):]]
    try:
        wanted = concept_ingredients(args.knowledge_dir)
        rows = build(list(zip(args.rxnorm, labels, strict=True)), args.codes, wanted)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, argv, [*args.rxnorm, *args.codes]), encoding="utf-8")
    missing = sorted(wanted - {n for r in rows if r.tty == "IN" for n in r.ingredients})
    if missing:
        print(f"no ingredient (IN) code for: {', '.join(missing)}", file=sys.stderr)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0
