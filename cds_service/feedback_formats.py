"""The feedback report as text (for a terminal), JSON (for tools), CSV (for a spreadsheet) and HTML (feedback_page.py).
Each gives the same numbers: rules, versions and counts, never a patient."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from .feedback_report import Report, RuleReport, Tally
from .state.analytics import SuggestionCount

COUNTS = ("issued", "with_feedback", "accepted", "overridden", "snoozed", "not_relevant")
SUGGESTION_COLUMNS = ("suggestion", "suggestion_kind", "suggestion_offered", "suggestion_accepted",
                      "suggestion_acceptance_rate")


def tally_dict(tally: Tally) -> dict[str, Any]:
    """A Tally's counts and rates as plain JSON values."""
    out: dict[str, Any] = {name: getattr(tally, name) for name in COUNTS}
    out["acceptance_rate"] = _ratio(tally.accepted, tally.with_feedback)
    out["override_rate"] = _ratio(tally.overridden, tally.with_feedback)
    out["override_reasons"] = dict(sorted(tally.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def suggestion_dict(offered: SuggestionCount) -> dict[str, Any]:
    """One suggestion of a rule: its label and kind, cards that offered it, cards whose acceptance named it."""
    return {"label": offered.label, "kind": offered.kind, "offered": offered.offered, "accepted": offered.accepted,
            "acceptance_rate": _ratio(offered.accepted, offered.offered)}


def as_json(report: Report) -> dict[str, Any]:
    """The report as one JSON document."""
    total = Tally()
    for tally in report.overall.values():
        total.add(tally)
    return {
        "window": {"since": _day(report.since), "until": _day(report.until), "by": report.by},
        "totals": {**tally_dict(total), "feedback_records": report.feedback_records,
                   "unknown_card_feedback": report.unknown_card_feedback},
        "review_first": {"explanation": report.explanation, "min_feedback": report.min_feedback,
                         "rules": [{"rank": r.review_rank, "rule": r.rule, "version": r.version,
                                    "score": round(r.review_score or 0.0, 4)} for r in report.review_first]},
        "rules": [_rule_json(r) for r in report.rules],
        "periods": [{"period": label, **tally_dict(tally)} for label, tally in report.overall.items()],
    }


def _rule_json(rule: RuleReport) -> dict[str, Any]:
    return {"rule": rule.rule, "version": rule.version, "title": rule.title, **tally_dict(rule.total),
            "review_rank": rule.review_rank,
            "review_score": None if rule.review_score is None else round(rule.review_score, 4),
            "periods": [{"period": label, **tally_dict(tally)} for label, tally in sorted(rule.periods.items())],
            "suggestions": [suggestion_dict(o) for o in rule.suggestions]}


def as_csv(report: Report) -> str:
    """One row per rule, version and period, and one per rule and version for all periods (period `all`); then
    one per suggestion a rule version offered (period `all`, the suggestion_* columns filled, the card counts not)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rule", "version", "period", *COUNTS, "acceptance_rate", "override_rate", "review_rank",
                     "review_score", "override_reasons", *SUGGESTION_COLUMNS])
    for rule in report.rules:
        for label, tally in [("all", rule.total), *sorted(rule.periods.items())]:
            row = tally_dict(tally)
            writer.writerow([rule.rule, rule.version, label, *(row[c] for c in COUNTS),
                             _cell(row["acceptance_rate"]), _cell(row["override_rate"]),
                             rule.review_rank if label == "all" and rule.review_rank else "",
                             f"{rule.review_score:.4f}" if label == "all" and rule.review_score is not None else "",
                             ";".join(f"{code}={n}" for code, n in row["override_reasons"].items())])
    for rule in report.rules:
        for offered in rule.suggestions:
            writer.writerow([rule.rule, rule.version, "all", *([""] * (len(COUNTS) + 5)), offered.label,
                             offered.kind, offered.offered, offered.accepted,
                             _cell(_ratio(offered.accepted, offered.offered))])
    return out.getvalue()


def as_text(report: Report) -> str:
    """A terminal report: the window, the review list with its explanation, then every rule."""
    window = f"{_day(report.since) or 'the start'} to {_day(report.until) or 'now'}"
    lines = [f"Feedback report, cards issued from {window} (UTC), by {report.by}",
             f"{report.feedback_records} feedback outcome(s) on these cards; {report.unknown_card_feedback} on cards "
             "the service has no record of (not counted below)", "", "REVIEW FIRST", report.explanation, ""]
    if report.review_first:
        for rule in report.review_first:
            t = rule.total
            lines.append(f"{rule.review_rank:>3}. {rule.rule} v{rule.version}: overridden {t.overridden}/"
                         f"{t.with_feedback} ({_pct(t.overridden, t.with_feedback)}), lower bound "
                         f"{100 * (rule.review_score or 0):.1f}%")
    else:
        lines.append(f"  no rule has {report.min_feedback} or more cards with feedback yet")
    lines += ["", "PER RULE (a card's last outcome counts; a group card counts for each rule it shows)",
              f"{'rule':<48} {'v':>2} {'issued':>7} {'feedback':>8} {'accepted':>13} {'overridden':>13} "
              f"{'snoozed':>7} {'not rel.':>8}"]
    for rule in report.rules:
        t = rule.total
        lines.append(f"{rule.rule[:48]:<48} {rule.version:>2} {t.issued:>7} {t.with_feedback:>8} "
                     f"{t.accepted:>5} ({_pct(t.accepted, t.with_feedback):>5}) "
                     f"{t.overridden:>5} ({_pct(t.overridden, t.with_feedback):>5}) {t.snoozed:>7} {t.not_relevant:>8}")
        if t.reasons:
            lines.append("      override reasons: " + ", ".join(
                f"{code} {n}" for code, n in sorted(t.reasons.items(), key=lambda kv: (-kv[1], kv[0]))))
        for offered in rule.suggestions:
            lines.append(f"      suggestion {offered.label!r}: offered {offered.offered}, accepted "
                         f"{offered.accepted}/{offered.offered} ({_pct(offered.accepted, offered.offered)})")
    lines += ["", f"PER {report.by.upper()} (all rules)",
              f"{'period':<12} {'issued':>7} {'feedback':>8} {'accepted':>8} {'overridden':>10} {'snoozed':>7} "
              f"{'not rel.':>8}"]
    for label, t in report.overall.items():
        lines.append(f"{label:<12} {t.issued:>7} {t.with_feedback:>8} {t.accepted:>8} {t.overridden:>10} "
                     f"{t.snoozed:>7} {t.not_relevant:>8}")
    return "\n".join(lines) + "\n"


def as_json_text(report: Report) -> str:
    return json.dumps(as_json(report), indent=2) + "\n"


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _day(value) -> str | None:
    return value.isoformat() if value else None
