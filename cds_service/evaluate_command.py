"""`spasm-cds evaluate PATH`: run hook calls in process, without a server, and show what a clinician would see.

One file: its cards as a table, or with --json the exact CDS Hooks response. A folder (of Bundles or requests, or a
Bulk FHIR NDJSON export): every patient on every core or a Dask cluster (population/), then the alert-burden report
(burden.py), and on request per-patient rows (CSV, Parquet) and an HTML report. The work is pipeline.respond, as in
the HTTP view."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from .bundles import InputError, WhatIf, request_for_file
from .errors import KnowledgeError, ServiceError
from .pipeline import respond
from .population.patients import knowledge_in
from .render.cards import EXTENSION_KEY
from .settings import Settings


def run(args: argparse.Namespace) -> int:
    """Evaluate args.path; 0 when every file gave a response, 1 otherwise, 2 on bad input or knowledge."""
    settings = Settings.from_env()
    try:
        today = date.fromisoformat(args.today) if args.today else date.today()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    what_if = WhatIf(assume_cramps=args.assume_cramps, draft_rxnorm=args.draft_order)
    path: Path = args.path
    hooks: list[str] = list(dict.fromkeys(args.hook or ()))
    if path.is_dir():  # the knowledge is loaded where the patients are evaluated: here, or in each worker
        return _folder(path, settings, args, tuple(hooks) or (None,), what_if, today)
    try:
        knowledge = knowledge_in(settings.knowledge_dir)
    except KnowledgeError as exc:
        print(exc, file=sys.stderr)
        return 2
    if len(hooks) > 1:
        print("one file is one call: give at most one --hook", file=sys.stderr)
        return 2
    try:
        service, body = request_for_file(path, knowledge, hooks[0] if hooks else None, what_if, today)
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


def _folder(folder: Path, settings: Settings, args: argparse.Namespace, hooks: tuple[str | None, ...],
            what_if: WhatIf, today: date) -> int:
    """The population report over the folder: 0 when every patient was evaluated, 1 when some were not, 2 on bad
    input (a malformed NDJSON line names file:line) or options."""
    from .population.ndjson import NdjsonError
    from .population.patients import Job
    from .population.rows import figures as figures_of
    from .population.runner import default_workers, input_format, run_dask, run_local

    workers = args.workers or default_workers()
    if workers < 1:
        print("--workers must be 1 or more", file=sys.stderr)
        return 2
    job = Job(hooks=hooks, what_if=what_if, today=today, settings=settings, show_ids=args.show_ids)
    engine = (f"dask ({args.scheduler})" if args.engine == "dask" else
              f"this machine, {workers} process{'es' if workers > 1 else ''}")
    try:
        if args.engine == "dask":
            population = run_dask(folder, job, args.scheduler, workers)
        else:
            with _progress(args.quiet) as progress:
                population = run_local(folder, job, workers, _advance(progress))
    except InputError as exc:
        print(f"{exc}" if isinstance(exc, NdjsonError) else f"{folder}: {exc}", file=sys.stderr)
        return 2
    except KnowledgeError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings_shown = {"hooks": [h or "patient-view (request files: their own)" for h in hooks],
                      "today": today.isoformat(), "assume_cramps": what_if.assume_cramps,
                      "draft_order": what_if.draft_rxnorm, "input": input_format(folder), "engine": engine}
    figures = figures_of(population.rows, settings_shown, population.input)
    title = f"alert burden on {today.isoformat()}"
    _write_outputs(args, population.rows, figures, title)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print_report(figures, title, str(folder))
    for name, why in figures["failed_files"].items():
        print(f"{name}: {why}", file=sys.stderr)
    without = figures["input"].get("resources_without_patient") or {}
    if without:
        print("resources naming no patient, left out: " + ", ".join(f"{k} {v}" for k, v in without.items()),
              file=sys.stderr)
    return 1 if figures["failed_files"] else 0


def _write_outputs(args: argparse.Namespace, rows: list[Any], figures: dict[str, Any], title: str) -> None:
    from .population.rows import write_csv, write_parquet

    if args.csv:
        write_csv(rows, args.csv, args.show_ids)
    if args.parquet:
        write_parquet(rows, args.parquet, args.show_ids)
    if args.html:
        from .population.html import report_html

        args.html.write_text(report_html(figures, title), encoding="utf-8")


def _progress(quiet: bool) -> Progress:
    """A bar on stderr; none when --quiet or stderr is not a terminal."""
    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=quiet or not console.is_terminal)


def _advance(progress: Progress) -> Any:
    tasks: dict[str, TaskID] = {}

    def advance(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    return advance


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
