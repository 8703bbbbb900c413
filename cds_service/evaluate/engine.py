"""evaluate(rules, facts) -> findings: include criteria must all hold, no exclude criterion may hold,
and a rule whose decision needs unknown data stays silent (reported in `silenced`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..gather.facts import ConditionFact, PatientFacts
from ..knowledge.lint import KIND_FIELDS
from ..knowledge.model import Rule
from ..terminology import Terminology
from .criteria import KINDS, Match


@dataclass(frozen=True)
class Finding:
    """A rule that fired, with the values its card text needs."""

    rule: Rule
    fields: dict[str, str]
    missing_labs: tuple[str, ...] = ()
    drafts: tuple[str, ...] = ()  # ids of the draft orders that triggered it


@dataclass(frozen=True)
class Evaluation:
    """The findings, the rules that could not decide because data was unknown, the draft orders whose drug could
    not be identified (those the call speaks about, and any other when a rule could not decide), and the labs the
    rules found present but could not read (their unit is missing or cannot be converted)."""

    findings: tuple[Finding, ...]
    silenced: tuple[str, ...]
    unchecked_drafts: tuple[str, ...] = ()
    unread_labs: tuple[str, ...] = ()


def passes_gate(concepts: tuple[str, ...], conditions: Iterable[ConditionFact]) -> bool:
    """True when the chart has one of the gate's conditions (or the service has no gate)."""
    if not concepts:
        return True
    wanted = set(concepts)
    return any(wanted & c.concepts for c in conditions)


def evaluate(rules: tuple[Rule, ...], facts: PatientFacts, terminology: Terminology) -> Evaluation:
    """Run each rule; pure function of its inputs."""
    findings: list[Finding] = []
    silenced: list[str] = []
    unread: dict[str, None] = {}  # ordered set
    for rule in rules:
        fields: dict[str, str] = {}
        bound: dict[str, Match] = {}
        decided = True
        fired = True
        for criterion in rule.include:
            match = KINDS[criterion.kind](criterion, facts, terminology, bound)
            unread.update(dict.fromkeys(match.unread))
            if match.holds is False:
                fired = False
                decided = True
                break
            if match.holds is None:
                decided = False
                continue
            alias = criterion.alias or KIND_FIELDS[criterion.kind][0]
            bound[alias] = match
            fields.update({f"{alias}.{k}": v for k, v in match.fields.items()})
        if fired and decided:
            # an exclusion sees every order: "already takes this drug" must find the renewal of the drug ordered
            seen = {alias: replace(m, drafts=()) for alias, m in bound.items()} if rule.exclude else bound
            for criterion in rule.exclude:
                match = KINDS[criterion.kind](criterion, facts, terminology, seen)
                unread.update(dict.fromkeys(match.unread))
                if match.holds is True:
                    fired = False
                    break
                if match.holds is None and not criterion.ignore_unknown:
                    decided = False
        if fired and not decided:
            silenced.append(rule.id)
        elif fired:
            missing = next((m.missing for m in bound.values() if m.missing), ())
            drafts = tuple(d for m in bound.values() for d in m.drafts)
            findings.append(Finding(rule, fields, missing, drafts))
    # a draft not selected is reported too when rules could not decide: its unknown drug may be why
    unchecked = tuple(d.id for d in facts.drafts if not d.identified and (d.selected or silenced))
    return Evaluation(tuple(findings), tuple(silenced), unchecked, tuple(unread))
