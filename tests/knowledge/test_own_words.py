"""Card text is our own: no ten-word run is shared with the seed articles; and the check itself catches copies."""
from __future__ import annotations

import pytest

from cds_service.knowledge.lint import card_texts, copied_runs
from tests.conftest import SHARED

SEEDS = sorted((SHARED / "seeds").glob("*.txt"))


@pytest.mark.skipif(not SEEDS, reason="the seed articles are not beside the repository")
def test_no_card_text_copies_a_seed_article(knowledge):
    seed_texts = [p.read_text(encoding="utf-8", errors="replace") for p in SEEDS]
    assert copied_runs(card_texts(knowledge), seed_texts) == []


def test_a_copied_sentence_is_reported_with_where_it_is():
    seed = "Cramps happen. " + "one two three four five six seven eight nine ten eleven" + " and more words."
    problems = copied_runs({"cards/x/y.yaml: card.detail": "Our text: One two three four five six seven eight "
                                                           "nine ten, then ours."}, [seed])
    assert len(problems) == 1 and problems[0].startswith("cards/x/y.yaml: card.detail: shares 1 ten-word run")


def test_nine_shared_words_are_allowed():
    seed = "one two three four five six seven eight nine"
    assert copied_runs({"here": "one two three four five six seven eight nine"}, [seed]) == []
