"""`spasm-cds feedback report` (what clinicians did with the cards, per rule) and `spasm-cds snooze list | show |
clear | audit` (the suppressions that hold cards back, cleared with an audit row). Both read the database of
SPASM_CDS_DATABASE_URL (migrating it first, as `serve` does) and print no patient data."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from .settings import Settings

log = logging.getLogger("cds_service.snooze")
FORMATS = ("text", "json", "csv", "html")


def add_feedback_arguments(sub) -> None:
    """The `feedback` command and its `report` action."""
    feedback = sub.add_parser("feedback", help="read stored feedback back: which rules are accepted, overridden, "
                                               "snoozed (docs/feedback-analytics.md)")
    actions = feedback.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="per rule and version: cards issued, accepted, overridden by reason, "
                                               "snoozed, not relevant, per week or month, and what to review first")
    report.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="cards issued on or after this day (UTC)")
    report.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="cards issued before this day (UTC)")
    report.add_argument("--by", choices=["week", "month"], default="week", help="period of the time series")
    report.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    report.add_argument("--output", type=Path, help="write to this file instead of standard output")
    report.add_argument("--min-feedback", type=int, default=None, metavar="N",
                        help="fewest cards with feedback for a rule to be ranked under 'review first' (default 10)")


def add_snooze_arguments(sub) -> None:
    """The `snooze` command: list, show, clear and audit."""
    snooze = sub.add_parser("snooze", help="list, show and clear the snoozes and 'not relevant' marks that hold "
                                           "cards back; every clear is audited")
    actions = snooze.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="suppressions, newest first")
    _selectors(listing)
    listing.add_argument("--limit", type=int, default=100, help="most rows printed (default 100)")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = actions.add_parser("show", help="one suppression by its id (from `snooze list`)")
    show.add_argument("id", help="<patient key prefix>/<rule>/<kind>")
    clear = actions.add_parser("clear", help="delete suppressions (the cards show again on the next call), audited")
    _selectors(clear)
    clear.add_argument("--id", dest="suppression_id", help="one suppression, by its id")
    clear.add_argument("--reason", required=True, help="why (stored in the audit row)")
    clear.add_argument("--by", dest="actor", help="who clears (default: the login name)")
    audit = actions.add_parser("audit", help="the clears made, newest first")
    audit.add_argument("--limit", type=int, default=50, help="most rows printed (default 50)")
    audit.add_argument("--json", action="store_true", help="JSON lines instead of text")


def _selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient-key", help="a patient key as stored (64 hex characters)")
    parser.add_argument("--patient", metavar="ID", help="a patient id, keyed the way the service keys it (the id "
                                                        "itself is never stored or printed)")
    parser.add_argument("--rule", help="a rule id")
    parser.add_argument("--kind", action="append", choices=["snooze", "until-data-changes", "acknowledged"],
                        help="only this kind (repeatable; default: snooze and until-data-changes)")


def run_feedback(args: argparse.Namespace) -> int:
    """`spasm-cds feedback report`."""
    from .feedback_formats import as_csv, as_json_text, as_text
    from .feedback_report import MIN_FEEDBACK, build_report, epoch
    from .knowledge.loader import load_knowledge
    from .state import open_database
    from .state.analytics import count_feedback

    settings = Settings.from_env()
    knowledge = load_knowledge(settings.knowledge_dir)
    database = open_database(settings.effective_database_url, settings.database_timeout_s)
    try:
        counts = count_feedback(database, epoch(args.since) if args.since else None,
                                epoch(args.until) if args.until else None, args.by)
    finally:
        database.engine.dispose()
    report = build_report(counts, knowledge.override_effects, {r.id: r.title for r in knowledge.rules.values()},
                          args.by, args.since, args.until,
                          MIN_FEEDBACK if args.min_feedback is None else max(1, args.min_feedback))
    if args.format == "html":
        from .feedback_page import render_page
        text = render_page(report, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    else:
        text = {"text": as_text, "json": as_json_text, "csv": as_csv}[args.format](report)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(report.rules)} rule version(s), {len(report.periods)} period(s))")
    else:
        sys.stdout.write(text)
    return 0


def run_snooze(args: argparse.Namespace) -> int:
    """`spasm-cds snooze list | show | clear | audit`; 2 with a message when a selector names nothing usable."""
    from .state import open_database
    from .state.snooze_admin import ADMIN_KINDS, SelectionError, SnoozeAdmin

    settings = Settings.from_env()
    database = open_database(settings.effective_database_url, settings.database_timeout_s)
    try:
        admin = SnoozeAdmin(database)
        if args.action == "audit":
            return _print_audit(admin, args)
        if args.action == "show":
            _print_one(admin.show(args.id))
            return 0
        patient_key = _patient_key(args, database, settings)
        kinds = tuple(args.kind or ADMIN_KINDS)
        if args.action == "list":
            _print_held(admin.find(patient_key, args.rule, kinds, args.limit), args.json)
            return 0
        entry = admin.clear(args.actor or _login(), args.reason, patient_key, args.rule, args.suppression_id, kinds)
        # who and how many, never a key: the audit row holds those
        log.info("snooze clear: audit %d, %d suppression(s) cleared by %s", entry.id, entry.cleared_count, entry.actor)
        print(f"cleared {entry.cleared_count} suppression(s); audit entry {entry.id}")
        return 0
    except SelectionError as exc:
        print(f"spasm-cds snooze: {exc}", file=sys.stderr)
        return 2
    finally:
        database.engine.dispose()


def _patient_key(args: argparse.Namespace, database, settings: Settings) -> str | None:
    from .state.snooze_admin import SelectionError
    from .state.suppression import keyed, read_secret

    if args.patient and args.patient_key:
        raise SelectionError("give --patient or --patient-key, not both")
    if args.patient:
        return keyed(read_secret(database, settings.patient_key_secret), args.patient)
    return args.patient_key


def _print_held(rows, as_json: bool) -> None:
    now = int(time.time())
    if as_json:
        for h in rows:
            print(json.dumps({"id": h.id, "patient_key": h.patient_key, "rule": h.card_key, "kind": h.kind,
                              "set_at": _when(h.set_at), "until": _when(h.until_at), "reason_code": h.reason_code,
                              "card_uuid": h.card_uuid, "active": h.active(now)}))
        return
    if not rows:
        print("no suppressions")
        return
    print(f"{'id':<60} {'set (UTC)':<17} {'until (UTC)':<17} reason")
    for h in rows:
        print(f"{h.id:<60} {_when(h.set_at):<17} {_when(h.until_at) or '-':<17} {h.reason_code or '-'}"
              f"{'' if h.active(now) else ' (lapsed)'}")


def _print_one(h) -> None:
    active = "yes" if h.active(int(time.time())) else "no (lapsed)"
    print("\n".join(f"{k:<12} {v}" for k, v in (
        ("id", h.id), ("patient key", h.patient_key), ("rule", h.card_key), ("kind", h.kind),
        ("set", f"{_when(h.set_at)} UTC"), ("until", f"{_when(h.until_at)} UTC" if h.until_at else "-"),
        ("reason", h.reason_code or "-"), ("card", h.card_uuid), ("active", active))))


def _print_audit(admin, args: argparse.Namespace) -> int:
    entries = admin.audit(args.limit)
    for e in entries:
        if args.json:
            print(json.dumps({"id": e.id, "at": _when(e.at), "by": e.actor, "reason": e.reason,
                              "selector": e.selector, "cleared_count": e.cleared_count, "cleared": e.cleared}))
        else:
            print(f"{e.id:>5}  {_when(e.at)}  by {e.actor}: cleared {e.cleared_count} "
                  f"({json.dumps(e.selector, sort_keys=True)}); reason: {e.reason}")
    if not entries and not args.json:
        print("no clears recorded")
    return 0


def _when(epoch_s: int | None) -> str | None:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M") if epoch_s is not None else None


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from exc
