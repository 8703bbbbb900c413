"""Drug identity cases (mappings/identity-cases.yaml): a medication as an EHR may send it (RxNorm codes, a name, a
route, a form) and the concepts it must and must not resolve to. Run by `spasm-cds lint` and the tests."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..terminology import Terminology


@dataclass(frozen=True)
class IdentityCase:
    """One medication and what it must be recognised as."""

    name: str
    rxnorm: tuple[str, ...]
    text: str | None
    route: Mapping[str, str] | None
    form: str | None
    concepts: tuple[str, ...]
    not_concepts: tuple[str, ...]
    by: str | None  # code | name: how it must be recognised


def build_cases(doc: Mapping[str, Any] | None) -> tuple[IdentityCase, ...]:
    """The cases of a (schema-valid) identity-cases document."""
    cases = []
    for raw in (doc or {}).get("cases") or ():
        codes = raw.get("rxnorm", ())
        cases.append(IdentityCase(raw["name"], (codes,) if isinstance(codes, str) else tuple(codes),
                                  raw.get("text"), raw.get("route"), raw.get("form"), tuple(raw.get("concepts", ())),
                                  tuple(raw.get("not", ())), raw.get("by")))
    return tuple(cases)


def case_problem(case: IdentityCase, terminology: Terminology, rxnorm_uri: str, snomed_uri: str) -> str | None:
    """What is wrong with how the case's medication resolves, or None."""
    codings = [{"system": rxnorm_uri, "code": code} for code in case.rxnorm]
    route: dict[str, Any] | None = None
    if case.route:
        route = {"text": case.route["text"]} if "text" in case.route else {}
        if "snomed" in case.route:
            route["coding"] = [{"system": snomed_uri, "code": case.route["snomed"]}]
    form = {"text": case.form} if case.form else None
    found = terminology.identify(codings, case.text, route=route, form=form)
    missing = [c for c in case.concepts if c not in found.concepts]
    wrong = [c for c in case.not_concepts if c in found.concepts]
    if missing:
        return f"does not resolve to {missing} (got {sorted(found.concepts)}, route {found.route})"
    if wrong:
        return f"resolves to {wrong}, which it must not (route {found.route})"
    if case.by and found.by != case.by:
        return f"recognised by {found.by}, not by {case.by}"
    return None


def concept_problems(cases: tuple[IdentityCase, ...], concepts: Mapping[str, Any]) -> list[str]:
    """Cases naming concepts that do not exist, or twice the same name."""
    problems, seen = [], set()
    for case in cases:
        if case.name in seen:
            problems.append(f"mappings/identity-cases.yaml: {case.name}: the name is used twice")
        seen.add(case.name)
        for cid in (*case.concepts, *case.not_concepts):
            if cid not in concepts or concepts[cid].domain != "medication":
                problems.append(f"mappings/identity-cases.yaml: {case.name}: {cid!r} is not a medication concept")
    return problems
