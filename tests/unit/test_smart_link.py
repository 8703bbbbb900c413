"""A card's SMART timeline link: only the rules whose card.smart_link asks for it carry it; its appContext is JSON
holding the charted labs' LOINC codes and the medications' RxNorm codes (products rolled up included), read from
mappings/, small enough to pass through an EHR; and the case runner catches a card that breaks a case's
smart_link expectation."""
from __future__ import annotations

import dataclasses
import json

from cds_service.case_runner import run_case
from cds_service.render.smart_link import APP_PATH, smart_link


def rule_case(knowledge, rule_id, expect="card"):
    return next(c for c in knowledge.cases if c.rule == rule_id and c.expect == expect)


def test_the_link_is_smart_and_its_app_context_carries_the_mapped_codes(knowledge):
    link = smart_link(["diuretic-low-potassium"], "http://cds.example.org/", knowledge)

    assert link is not None and link["type"] == "smart"
    assert link["url"] == "http://cds.example.org" + APP_PATH
    context = json.loads(link["appContext"])
    assert [lab["id"] for lab in context["labs"]] == ["potassium", "magnesium"]
    potassium = knowledge.concepts["potassium"]
    assert context["labs"][0]["loinc"] == list(potassium.codes["loinc"])
    assert context["labs"][0]["unit"] == potassium.lab_spec.canonical_unit
    assert (context["labs"][0]["low"], context["labs"][0]["high"]) == (potassium.lab_spec.fallback_low,
                                                                       potassium.lab_spec.fallback_high)
    thiazides = next(m for m in context["medications"] if m["id"] == "thiazide-diuretics")
    own = knowledge.concepts["thiazide-diuretics"].codes["rxnorm"]
    assert thiazides["rxnorm"][:len(own)] == list(own)
    # the products of the case that gives the card roll up to the concept, so the app finds them by code
    case = rule_case(knowledge, "diuretic-low-potassium")
    assert {m["rxnorm"] for m in case.chart["medications"]} <= {c for m in context["medications"] for c in m["rxnorm"]}
    assert len(link["appContext"]) < 8192


def test_a_rule_without_smart_link_offers_none_and_a_shared_card_merges_concepts(knowledge):
    assert smart_link(["low-potassium", "statin-use"], "http://x", knowledge) is None
    merged = json.loads(smart_link(["statin-use", "statin-with-raised-ck", "diuretic-low-potassium"], "http://x",
                                   knowledge)["appContext"])
    assert [lab["id"] for lab in merged["labs"]] == ["ck", "potassium", "magnesium"]
    assert [m["id"] for m in merged["medications"]] == ["statins", "loop-diuretics", "thiazide-diuretics"]


def test_the_case_runner_checks_the_smart_link_expectation_both_ways(knowledge, today):
    with_link = rule_case(knowledge, "statin-with-raised-ck")
    without_link = rule_case(knowledge, "low-potassium")

    assert run_case(knowledge, dataclasses.replace(with_link, smart_link=True), today=today).problem is None
    assert run_case(knowledge, dataclasses.replace(with_link, smart_link=False), today=today).problem == \
        "expected no timeline app link on the card, got one"
    assert run_case(knowledge, dataclasses.replace(without_link, smart_link=False), today=today).problem is None
    assert run_case(knowledge, dataclasses.replace(without_link, smart_link=True), today=today).problem == \
        "expected the card to offer the timeline app, it does not"


def test_only_the_rules_that_ask_for_it_carry_the_link(knowledge, today):
    asking = {r.id for r in knowledge.rules.values() if r.card.smart_link}
    assert asking == {"diuretic-low-potassium", "statin-with-raised-ck", "statin-with-ck-above-10x-uln"}
    for case in (c for c in knowledge.cases if c.expect == "card" and c.rule in asking | {"low-potassium"}):
        result = run_case(knowledge, case, today=today)
        apps = [link for link in result.card["links"] if link["type"] == "smart"]
        rules = result.card["extension"]["org.spasm-cds"]["rules"]
        assert bool(apps) == bool(asking & set(rules)), (case.rule, case.name)
