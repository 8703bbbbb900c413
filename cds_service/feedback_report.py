"""The feedback report: per rule and rule version, how many cards were issued and what clinicians did with them
(accepted, overridden by reason, snoozed, not relevant), per week or month, and which rules a site should review
first. Built from the counts state/analytics.py reads; override reasons are told apart by their effect in
cards/services.yaml (`snooze`: snoozed; `until-data-changes`: not relevant). No patient data: rules and counts."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from .knowledge.model import OverrideEffect
from .state.analytics import Counts, SuggestionCount

MIN_FEEDBACK = 10  # the default fewest cards with feedback before a rule is ranked
Z_95 = 1.959964  # two-sided 95% normal quantile, for the Wilson bound
NO_REASON = "(no reason)"
REVIEW_EXPLAINED = (
    "Rules are ranked by the lower bound of the 95% Wilson score interval of their override rate "
    "(overridden / cards with feedback, counting each card's last outcome). The bound is high only when the rate is "
    "high and there is enough feedback to trust it, so a rule overridden 3 times out of 3 does not outrank one "
    "overridden 80 times out of 100. Rules with fewer than {min_n} cards with feedback are not ranked.")


@dataclass
class Tally:
    """Counts of cards: issued, with feedback, accepted, overridden (by reason), snoozed and not relevant."""

    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    snoozed: int = 0
    not_relevant: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def with_feedback(self) -> int:
        return self.accepted + self.overridden

    def add(self, other: Tally) -> None:
        self.issued += other.issued
        self.accepted += other.accepted
        self.overridden += other.overridden
        self.snoozed += other.snoozed
        self.not_relevant += other.not_relevant
        self.reasons.update(other.reasons)


@dataclass
class RuleReport:
    """One rule at one version: its totals and its counts per period (period label -> Tally)."""

    rule: str
    version: int
    title: str
    total: Tally = field(default_factory=Tally)
    periods: dict[str, Tally] = field(default_factory=dict)
    review_score: float | None = None  # the Wilson lower bound of the override rate; None when not ranked
    review_rank: int | None = None
    # each suggestion the rule's cards offered: most offered first (a group card's suggestion counts for the rule
    # that asked for it)
    suggestions: list[SuggestionCount] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        return _rate(self.total.accepted, self.total.with_feedback)

    @property
    def override_rate(self) -> float | None:
        return _rate(self.total.overridden, self.total.with_feedback)


@dataclass(frozen=True)
class Report:
    """The whole report for one window."""

    since: date | None
    until: date | None
    by: str  # week | month
    min_feedback: int
    rules: tuple[RuleReport, ...]  # review order first, then the unranked by cards issued
    periods: tuple[str, ...]
    overall: dict[str, Tally]  # period -> all rules together (a group card counts once per rule it shows)
    feedback_records: int
    unknown_card_feedback: int

    @property
    def review_first(self) -> tuple[RuleReport, ...]:
        return tuple(r for r in self.rules if r.review_rank is not None)

    @property
    def explanation(self) -> str:
        return REVIEW_EXPLAINED.format(min_n=self.min_feedback)


def build_report(counts: Counts, effects: Mapping[str, OverrideEffect], titles: Mapping[str, str],
                 by: str = "week", since: date | None = None, until: date | None = None,
                 min_feedback: int = MIN_FEEDBACK) -> Report:
    """Fold the database's counts (made per `by`: week or month) into per-rule reports, and rank them."""
    rules: dict[tuple[str, int], RuleReport] = {}

    def tally(rule: str, version: int, period: str) -> Tally:
        report = rules.get((rule, version))
        if report is None:
            report = rules[(rule, version)] = RuleReport(rule, version, titles.get(rule, rule))
        return report.periods.setdefault(period, Tally())

    for issued in counts.issued:
        tally(issued.rule, issued.version, issued.period).issued += issued.cards
    for outcome in counts.outcomes:
        bucket = tally(outcome.rule, outcome.version, outcome.period)
        if outcome.outcome == "accepted":
            bucket.accepted += outcome.cards
            continue
        bucket.overridden += outcome.cards
        bucket.reasons[outcome.reason_code or NO_REASON] += outcome.cards
        effect = effects.get(outcome.reason_code or "")
        if effect is not None and effect.kind == "snooze":
            bucket.snoozed += outcome.cards
        elif effect is not None and effect.kind == "until-data-changes":
            bucket.not_relevant += outcome.cards
    for offered in counts.suggestions:
        report = rules.get((offered.rule, offered.version))
        if report is None:
            report = rules[(offered.rule, offered.version)] = RuleReport(
                offered.rule, offered.version, titles.get(offered.rule, offered.rule))
        report.suggestions.append(offered)
    for report in rules.values():
        report.suggestions.sort(key=lambda o: (-o.offered, -o.accepted, o.label, o.kind))
    overall: dict[str, Tally] = defaultdict(Tally)
    for report in rules.values():
        for label, bucket in report.periods.items():
            report.total.add(bucket)
            overall[label].add(bucket)
    ranked = sorted((r for r in rules.values() if r.total.with_feedback >= min_feedback),
                    key=lambda r: (-wilson_lower_bound(r.total.overridden, r.total.with_feedback),
                                   -r.total.with_feedback, r.rule, r.version))
    for rank, report in enumerate(ranked, 1):
        report.review_rank = rank
        report.review_score = wilson_lower_bound(report.total.overridden, report.total.with_feedback)
    unranked = sorted((r for r in rules.values() if r.review_rank is None),
                      key=lambda r: (-r.total.issued, r.rule, r.version))
    return Report(since, until, by, min_feedback, tuple(ranked + unranked), tuple(sorted(overall)),
                  dict(sorted(overall.items())), counts.feedback_records, counts.unknown_card_feedback)


def wilson_lower_bound(successes: int, n: int, z: float = Z_95) -> float:
    """The lower end of the Wilson score interval for a proportion (0 when n is 0)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def epoch(day: date) -> int:
    """Midnight UTC of a day, in epoch seconds."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None
