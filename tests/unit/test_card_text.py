"""Card text as it is filled in: names read in lower case mid-sentence, no brackets inside brackets."""
from __future__ import annotations

import pytest

from cds_service.case_runner import text_problem
from cds_service.render.cards import fill, flatten_brackets, mid_sentence

EPONYMS = frozenset({"Graves"})


@pytest.mark.parametrize(("name", "expected"), [
    ("Hypothyroidism", "hypothyroidism"),
    ("Chronic Kidney Disease, Stage 3a", "chronic kidney disease, stage 3a"),
    ("CKD stage 4", "CKD stage 4"),
    ("COPD", "COPD"),
    ("Parkinson's disease", "Parkinson's disease"),
    ("Graves disease", "Graves disease"),
    ("Guillain-Barré syndrome", "Guillain-Barré syndrome"),
    ("HbA1c", "HbA1c"),
])
def test_a_name_mid_sentence_is_lower_case_except_acronyms_and_eponyms(name, expected):
    assert mid_sentence(name, EPONYMS) == expected


def test_a_condition_name_is_lower_case_inside_a_sentence_and_kept_where_a_sentence_starts():
    fields = {"condition.name": "Hypothyroidism"}
    assert fill("Statin on {condition.name}", fields) == "Statin on hypothyroidism"
    assert fill("Records **{condition.name}**.", fields) == "Records **hypothyroidism**."
    assert fill("{condition.name} on the list", fields) == "Hypothyroidism on the list"
    assert fill("Seen. **{condition.name}** too", fields) == "Seen. **Hypothyroidism** too"
    assert fill("{condition.name}", fields, opens_sentence=False) == "hypothyroidism"


def test_a_drug_display_keeps_its_case_and_so_does_a_condition_under_another_alias_when_not_declared():
    assert fill("Ordered {draft.name} today", {"draft.name": "Dantrium capsule"}) == "Ordered Dantrium capsule today"
    fields = {"heart.name": "Heart Failure"}
    assert fill("With {heart.name}", fields) == "With Heart Failure"
    assert fill("With {heart.name}", fields, diagnoses=frozenset({"heart"})) == "With heart failure"


def test_values_that_are_not_names_keep_their_case():
    assert fill("TSH {lab.value} {lab.unit}", {"lab.value": "8.2", "lab.unit": "mIU/L"}) == "TSH 8.2 mIU/L"


def test_brackets_inside_brackets_become_a_comma_aside():
    fields = {"lab.range": "3.5–5 mmol/L (typical adult range)"}
    assert fill("(reference {lab.range})", fields) == "(reference 3.5–5 mmol/L, typical adult range)"
    assert flatten_brackets("a (b (c (d)) e)") == "a (b, c, d e)"


def test_a_markdown_link_inside_brackets_keeps_its_url():
    text = "(see [the label](https://example.org/a_(b)))"
    assert flatten_brackets(text) == text


def test_a_label_equal_to_the_name_is_not_repeated():
    fields = {"condition.name": "Achalasia (cardiospasm)", "condition.label": "achalasia (cardiospasm)"}
    assert fill("Shows **{condition.name}** ({condition.label}).", fields) == "Shows **achalasia (cardiospasm)**."
    fields = {"condition.name": "Achalasia", "condition.label": "oesophageal disorders"}
    assert fill("Shows {condition.name} ({condition.label}).", fields) == "Shows achalasia (oesophageal disorders)."


@pytest.mark.parametrize("text", ["a (b (c))", "2 finding(s)"])
def test_the_case_runner_refuses_text_that_reads_badly(text):
    assert text_problem(text)


def test_the_case_runner_accepts_a_link_inside_brackets():
    assert text_problem("(see [label](https://example.org/x))") is None
