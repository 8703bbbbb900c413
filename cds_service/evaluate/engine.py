"""evaluate(rules, facts) -> findings: include criteria must all hold, no exclude criterion may hold,
and a rule whose decision needs unknown data stays silent (reported in `silenced`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..gather.facts import ConditionFact, PatientFacts
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

    @property
    def key(self) -> str:
        """The rule, and the order it speaks about: a rule about orders gives one finding per draft."""
        return finding_key(self.rule.id, self.drafts[0] if self.drafts else None)


def finding_key(rule_id: str, draft_id: str | None) -> str:
    """What tells findings apart in one call: the rule id, and for a finding about an order, the draft's id."""
    return f"{rule_id}@{draft_id}" if draft_id else rule_id


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
    """Run each rule; pure function of its inputs. A rule about the order being placed (a draft-order criterion)
    is run once per selected draft, so that each order is checked, named and offered for removal on its own."""
    findings: list[Finding] = []
    silenced: dict[str, None] = {}  # ordered set
    unread: dict[str, None] = {}
    selected = [d.id for d in facts.drafts if d.selected]
    per_draft = [replace(facts, drafts=tuple(replace(d, selected=d.id == one) for d in facts.drafts))
                 for one in selected] if len(selected) > 1 else [facts]
    for rule in rules:
        views = per_draft if any(KINDS[c.kind].per_draft for c in rule.include) else (facts,)
        for view in views:
            finding, undecided = _run(rule, view, terminology, unread)
            if finding is not None:
                findings.append(finding)
            elif undecided:
                silenced[rule.id] = None
    # a draft not selected is reported too when rules could not decide: its unknown drug may be why
    unchecked = tuple(d.id for d in facts.drafts if not d.identified and (d.selected or silenced))
    return Evaluation(tuple(findings), tuple(silenced), unchecked, tuple(unread))


def _run(rule: Rule, facts: PatientFacts, terminology: Terminology,
         unread: dict[str, None]) -> tuple[Finding | None, bool]:
    """The rule's finding, or None and whether that is because data it needed was unknown."""
    fields: dict[str, str] = {}
    bound: dict[str, Match] = {}
    decided = True
    for criterion in rule.include:
        match = KINDS[criterion.kind].evaluate(criterion, facts, terminology, bound)
        unread.update(dict.fromkeys(match.unread))
        if match.holds is False:
            return None, False
        if match.holds is None:
            decided = False
            continue
        alias = criterion.alias or KINDS[criterion.kind].alias
        bound[alias] = match
        fields.update({f"{alias}.{k}": v for k, v in match.fields.items()})
    if not decided:
        return None, True
    # an exclusion sees every order: "already takes this drug" must find the renewal of the drug ordered
    seen = {alias: replace(m, drafts=()) for alias, m in bound.items()} if rule.exclude else bound
    for criterion in rule.exclude:
        match = KINDS[criterion.kind].evaluate(criterion, facts, terminology, seen)
        unread.update(dict.fromkeys(match.unread))
        if match.holds is True:
            return None, False
        if match.holds is None and not criterion.ignore_unknown:
            decided = False
    if not decided:
        return None, True
    missing = next((m.missing for m in bound.values() if m.missing), ())
    drafts = tuple(d for m in bound.values() for d in m.drafts)
    return Finding(rule, fields, missing, drafts), False
