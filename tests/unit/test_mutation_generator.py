"""The mutation fuzzer's generator (tests/support/mutations.py) is reproducible: case i of a seed is the same on
every run, seeds differ, and a run uses every kind of mutation."""
from __future__ import annotations

from tests.support.malformed import SERVICE, valid_body
from tests.support.mutations import mutants

BASES = [("hook", SERVICE, valid_body()),
         ("feedback", SERVICE + "/feedback", {"feedback": [{"card": "c", "outcome": "overridden",
                                                            "outcomeTimestamp": "2027-01-15T08:00:00Z"}]})]


def test_the_same_seed_gives_the_same_cases_and_another_seed_others():
    first, again, other = (list(mutants(BASES, 300, seed)) for seed in (7, 7, 8))
    assert first == again
    assert [m.body for m in first] != [m.body for m in other]


def test_a_run_uses_every_kind_of_mutation():
    names = " ".join(m.name for m in mutants(BASES, 1000, 7))
    for kind in ("type-swap", "delete@", "null@", "empty@", "as-string", "string-as-number", "huge-", "deep-",
                 "unicode-", "nul@", "trailing-line-break", "date-edge", "extra-field", "truncate-at", "flip-byte",
                 "duplicate-"):
        assert kind in names, kind
