"""`spasm-cds evaluate PATH`: run hook calls in process, without a server, and show what a clinician would see.

One file: its cards as a table, or with --json the exact CDS Hooks response. A folder: a progress bar over its
*.json files, then the alert-burden report (burden.py). The work is pipeline.respond, as in the HTTP view."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .bundles import InputError, WhatIf, request_for_file
from .burden import BurdenReport
from .errors import KnowledgeError, ServiceError
from .knowledge.loader import load_knowledge
from .knowledge.model import Knowledge
from .pipeline import respond
from .render.cards import EXTENSION_KEY
from .settings import Settings


def run(args: argparse.Namespace) -> int:
    """Evaluate args.path; 0 when every file gave a response, 1 otherwise, 2 on bad input or knowledge."""
    settings = Settings.from_env()
    try:
        knowledge = load_knowledge(settings.knowledge_dir)
        today = date.fromisoformat(args.today) if args.today else date.today()
    except (KnowledgeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    what_if = WhatIf(assume_cramps=args.assume_cramps, draft_rxnorm=args.draft_order)
    path: Path = args.path
    if path.is_dir():
        return _folder(path, knowledge, settings, args, what_if, today)
    try:
        service, body = request_for_file(path, knowledge, args.hook, what_if, today)
        response = respond(body, service, knowledge, settings, today)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"{path}: the service would answer {exc.status}: {exc.diagnostics}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(response, indent=2))
    else:
        Console().print(cards_table(response, f"{path.name}: {service.id}"))
    return 0


def evaluate_folder(folder: Path, knowledge: Knowledge, settings: Settings, hook: str | None, what_if: WhatIf,
                    today: date, progress: Progress | None = None) -> BurdenReport:
    """The burden report over every *.json file under the folder (sorted), one patient per file."""
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    report = BurdenReport()
    task = progress.add_task("evaluating", total=len(files)) if progress else None
    for path in files:
        try:
            service, body = request_for_file(path, knowledge, hook, what_if, today)
            report.add(respond(body, service, knowledge, settings, today, observe=report.observe))
        except (InputError, ServiceError) as exc:
            report.fail(str(path.relative_to(folder)), str(getattr(exc, "diagnostics", exc)))
        if progress is not None and task is not None:
            progress.advance(task)
    return report


def cards_table(response: dict[str, Any], title: str) -> Table:
    """The cards as rows: indicator, summary, the rules behind the card."""
    table = Table(title=title, show_lines=True)
    for column in ("indicator", "summary", "rules"):
        table.add_column(column)
    for card in response["cards"]:
        ours = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
        rules = ", ".join(ours.get("rules") or ()) or ("(missing data)" if "missingData" in ours else "")
        table.add_row(card["indicator"], card["summary"], rules)
    if not response["cards"]:
        table.add_row("-", "no cards", "")
    return table


def _folder(folder: Path, knowledge: Knowledge, settings: Settings, args: argparse.Namespace, what_if: WhatIf,
            today: date) -> int:
    with Progress(console=Console(stderr=True), transient=True) as progress:
        report = evaluate_folder(folder, knowledge, settings, args.hook, what_if, today, progress)
    figures = report.figures()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print_report(figures, f"alert burden on {today.isoformat()}", str(folder))
    for name, why in figures["failed_files"].items():
        print(f"{name}: {why}", file=sys.stderr)
    return 1 if figures["failed_files"] else 0


def _print_report(figures: dict[str, Any], title: str, caption: str) -> None:
    console = Console()
    per = figures["cards_per_patient"]
    summary = Table(title=title, caption=caption, show_header=False)
    summary.add_column()
    summary.add_column(justify="right")
    for label, value in (("patients", figures["patients"]), ("patients with any card", figures["patients_with_cards"]),
                         ("cards", figures["cards"]), ("cards per patient: median", per["median"]),
                         ("cards per patient: p90", per["p90"]), ("cards per patient: max", per["max"]),
                         ("missing-data cards", figures["missing_data_cards"]),
                         ("medications known by name only", figures["medications_by_name_only"]),
                         ("unrecognised RxNorm codes (distinct)", len(figures["unrecognised_rxnorm_codes"])),
                         ("files that failed", len(figures["failed_files"]))):
        summary.add_row(label, str(value))
    console.print(summary)
    for heading, column, counts in (
            ("cards by indicator", "indicator", figures["cards_by_indicator"]),
            ("findings by rule", "rule (a grouped card counts once per rule on it)", figures["findings_by_rule"]),
            ("unrecognised RxNorm codes", "code (medications carrying it)", figures["unrecognised_rxnorm_codes"])):
        if not counts:
            continue
        table = Table(title=heading)
        table.add_column(column)
        table.add_column("count", justify="right")
        for key, count in counts.items():
            table.add_row(key, str(count))
        console.print(table)
    if figures["unread_lab_units"]:
        table = Table(title="lab results in a unit that could not be read (present, value unknown)")
        for column in ("lab", "unit as sent", "patients"):
            table.add_column(column, justify="right" if column == "patients" else "left")
        for row in figures["unread_lab_units"]:
            table.add_row(row["lab"], repr(row["unit"]) if row["unit"] != "(no unit)" else row["unit"],
                          str(row["patients"]))
        console.print(table)
