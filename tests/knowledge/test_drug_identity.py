"""Drug identity: every medication concept resolves by code; every code of the roll-up table for the drugs the order
hooks check (the muscle relaxants and the drugs they interact with) resolves to its concepts, term type by term type;
the hand-written identity cases (EHR spellings, brands, routes) hold."""
from __future__ import annotations

from collections import defaultdict

import pytest

from cds_service.cli import identity_failures
from cds_service.knowledge.identity import case_problem
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.rxnorm_table import read_rows
from tests.conftest import REPO

_KNOWLEDGE = load_knowledge(REPO)
_TERMS = _KNOWLEDGE.terminology
_RXNORM, _SNOMED = _KNOWLEDGE.systems["rxnorm"][0], _KNOWLEDGE.systems["snomed"][0]
_ROWS = read_rows(REPO / "mappings" / "rxnorm" / "product-ingredient.tsv")
_TTYS = ("IN", "PIN", "BN", "SCDC", "SCD", "SBD", "GPCK", "BPCK")


def _order_hook_concepts() -> set[str]:
    """Every medication concept a rule of the order hooks names: the relaxants and the drugs they interact with."""
    found: set[str] = set()
    for rule in _KNOWLEDGE.rules.values():
        if not {"order-select", "order-sign"} & set(rule.hooks):
            continue
        stack = list(rule.include) + list(rule.exclude)
        while stack:
            criterion = stack.pop()
            stack += criterion.any_of
            if criterion.kind in ("medication", "draft-order"):
                found.update(criterion.concepts)
    return found


def _code_cases() -> list[tuple[str, str, str, str]]:
    """(concept, ingredient, term type, rxcui): for each ingredient of each order-hook concept, the first code of
    each term type the table holds for a product of that ingredient alone."""
    by_ingredient: dict[tuple[str, str], list] = defaultdict(list)
    for row in _ROWS:
        if len(row.ingredients) == 1:
            by_ingredient[(row.ingredients[0], row.tty)].append(row)
    cases = []
    for cid in sorted(_order_hook_concepts()):
        for name in _KNOWLEDGE.concepts[cid].ingredients:
            for tty in _TTYS:
                rows = by_ingredient.get((name, tty))
                if rows:
                    cases.append((cid, name, tty, min(rows, key=lambda r: int(r.rxcui)).rxcui))
    return cases


CODE_CASES = _code_cases()


@pytest.mark.parametrize(("concept", "ingredient", "tty", "rxcui"), CODE_CASES,
                         ids=[f"{c}::{i}::{t}" for c, i, t, _ in CODE_CASES])
def test_code_of_every_term_type_resolves_to_its_concept(concept, ingredient, tty, rxcui):
    row = _TERMS._products[rxcui]
    found = _TERMS.identify([{"system": _RXNORM, "code": rxcui}], None)
    assert found.by == "code" and ingredient in found.ingredients
    systemic = found.route is None or found.route in _TERMS.routes.systemic \
        or found.route in _KNOWLEDGE.concepts[concept].routes
    assert (concept in found.concepts) == systemic, f"{rxcui} {row.display!r} ({row.dose_form}) -> {found}"


def test_every_relaxant_and_strong_interactor_has_a_product_code_and_its_ingredient_code_or_a_warning():
    """The muscle relaxants and the drugs whose pairing with one is contraindicated: each has a product (SCD) code;
    its ingredient (IN) code too, unless `spasm-cds lint` warns that no public source verified it."""
    from cds_service.knowledge.lint import uncoded_ingredients

    warned = " ".join(uncoded_ingredients(_KNOWLEDGE.concepts, _KNOWLEDGE.product_ingredients))
    missing = []
    for cid in ("skeletal-muscle-relaxants", "benzodiazepines", "gabapentinoids", "strong-cyp1a2-inhibitors"):
        for name in _KNOWLEDGE.concepts[cid].ingredients:
            ttys = {tty for c, i, tty, _ in CODE_CASES if i == name}
            if "SCD" not in ttys or ("IN" not in ttys and name not in warned):
                missing.append(f"{cid}: {name} has {sorted(ttys)}")
    assert not missing, "\n".join(missing)


def test_combination_products_resolve_to_every_concept_of_their_ingredients():
    combos = [r for r in _ROWS if len(r.ingredients) > 1 and r.tty in ("SCD", "SBD")
              and {"oxycodone", "hydrocodone", "carisoprodol", "codeine"} & set(r.ingredients)]
    assert combos
    for row in combos:
        found = _TERMS.identify([{"system": _RXNORM, "code": row.rxcui}], None)
        assert "opioids" in found.concepts or "carisoprodol" in found.concepts, (row, found)


@pytest.mark.parametrize("case", _KNOWLEDGE.identity_cases, ids=lambda c: c.name)
def test_identity_case(case):
    assert case_problem(case, _TERMS, _RXNORM, _SNOMED) is None


def test_lint_reports_a_failing_identity_case():
    from dataclasses import replace

    broken = replace(_KNOWLEDGE, identity_cases=(replace(_KNOWLEDGE.identity_cases[0], concepts=("statins",)),))
    (failure,) = identity_failures(broken)
    assert failure.startswith(f"mappings/identity-cases.yaml: {_KNOWLEDGE.identity_cases[0].name}: does not resolve")


def test_every_medication_concept_lists_codes_or_says_why_not():
    import yaml

    for concept in _KNOWLEDGE.concepts.values():
        if concept.domain == "medication" and not concept.codes.get("rxnorm"):
            doc = yaml.safe_load((REPO / "mappings" / "medications" / f"{concept.id}.yaml").read_text())
            assert doc.get("codes_unverified"), concept.id
