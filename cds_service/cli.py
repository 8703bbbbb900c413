"""The spasm-cds command: serve (gunicorn by default), lint (check the knowledge), docs (generated pages), evaluate
(cards for files; a population report for a folder), export-ndjson (Bundles as a Bulk export), db
(migrations), demo-fhir (a local FHIR server with demo data), terminology build (the RxNorm roll-up table),
feedback report and snooze (list, show, clear, audit)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

from .errors import KnowledgeError
from .settings import Settings
from .vocabulary import Hook


def main(argv: list[str] | None = None) -> int:
    """Entry point of `spasm-cds` and `python -m cds_service`."""
    parser = argparse.ArgumentParser(prog="spasm-cds", description=__doc__)
    parser.add_argument("--version", action="version", version=f"spasm-cds {metadata.version('spasm-cds')}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the CDS Hooks service (gunicorn)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; SPASM_CDS_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080; SPASM_CDS_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default 2; SPASM_CDS_WORKERS)")
    serve.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    serve.add_argument("--unix-socket", type=Path, help=argparse.SUPPRESS)  # gunicorn behind the nginx proxy
    lint = sub.add_parser("lint", help="validate cards/ and mappings/ and run every rule's cases")
    lint.add_argument("--knowledge-dir", type=Path, help="folder holding cards/ and mappings/")
    lint.add_argument("--seeds", type=Path, help="folder of the seed articles (*.txt); card text must not copy them")
    docs = sub.add_parser("docs", help="write docs/knowledge.md and docs/knowledge/<rule>.md from the rules, and "
                                       "the README's configuration table from the settings")
    docs.add_argument("--out", type=Path, default=Path("docs"), help="folder to write into (default docs)")
    docs.add_argument("--readme", type=Path, default=Path("README.md"),
                      help="the README whose settings table to write (default README.md; skipped if missing)")
    docs.add_argument("--check", action="store_true", help="only report whether the pages and the table are current")
    db = sub.add_parser("db", help="the service database (SPASM_CDS_DATABASE_URL)")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply the migrations (serve also does this)")
    evaluate = sub.add_parser("evaluate", help="cards for a FHIR Bundle or CDS Hooks request; a folder: alert burden")
    evaluate.add_argument("path", type=Path, help="a Bundle or request JSON file, or a folder of them")
    evaluate.add_argument("--json", action="store_true", help="print the exact response (folder: the report)")
    evaluate.add_argument("--hook", choices=[str(h) for h in Hook], action="append",
                          help="the hook to call for a Bundle (default patient-view); a folder: repeat for several")
    evaluate.add_argument("--draft-order", metavar="RXNORM", help="add a draft MedicationRequest (order hooks)")
    evaluate.add_argument("--assume-cramps", action="store_true", help="add an active cramp Condition (what-if)")
    evaluate.add_argument("--today", metavar="YYYY-MM-DD", help="the day to evaluate on (default: today)")
    _population_arguments(evaluate)
    export = sub.add_parser("export-ndjson", help="write Bundles as a Bulk FHIR NDJSON export (a file per type, "
                                                  "references Type/id), e.g. to try evaluate on one")
    export.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE", help="Bundle files or folders of them")
    export.add_argument("--out", type=Path, required=True, help="the folder to write <Type>.ndjson into")
    export.add_argument("--copies", type=int, default=1, metavar="N",
                        help="write each Bundle N times, every id new per copy (a larger population)")
    fhir = sub.add_parser("demo-fhir", help="a local FHIR R4 server (sekmet-fhir, installed on first use) with the "
                                            "demo patients and any Bundles given, e.g. for the CDS Hooks Sandbox")
    fhir.add_argument("bundles", nargs="*", type=Path, metavar="BUNDLE",
                      help="Bundle files (transaction or collection) or folders of them, e.g. Synthea's, to load too")
    fhir.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (default 8090)")
    fhir.add_argument("--base-url", help="its base URL as the browser and the service reach it, used in its links "
                                         "(default http://localhost:PORT/fhir)")
    fhir.add_argument("--assume-cramps", action="store_true",
                      help="add an active cramp Condition to each patient of the Bundles given (what-if)")
    fhir.add_argument("--no-demo-patients", action="store_true", help="load only the Bundles given")
    fhir.add_argument("--service-url", default="http://localhost:8080/cds-services",
                      help="the discovery URL put in the printed Sandbox link (default %(default)s)")
    fhir.add_argument("--sandbox-url", default="https://sandbox.cds-hooks.org/",
                      help="the Sandbox the printed link opens, e.g. a local build at http://localhost:8000/ "
                           "(default %(default)s)")
    fhir.add_argument("--cache", type=Path, help="folder for sekmet-fhir's virtualenv (default ~/.cache/spasm-cds)")
    fhir.add_argument("--workdir", type=Path, help="folder for its settings, log and database (the database is "
                                                   "emptied at each start; default <SPASM_CDS_DATA_DIR>/demo-fhir)")
    terminology = sub.add_parser("terminology", help="build the RxNorm roll-up table from an RxNorm release "
                                                     "and/or curated code lists")
    terminology_sub = terminology.add_subparsers(dest="action", required=True)
    from .tools.rxnorm_build import add_arguments as add_build_arguments
    add_build_arguments(terminology_sub.add_parser("build", help="write mappings/rxnorm/product-ingredient.tsv "
                                                                 "(or --out) for the concepts in mappings/"))
    from .admin_command import add_feedback_arguments, add_snooze_arguments
    add_feedback_arguments(sub)
    add_snooze_arguments(sub)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command in ("feedback", "snooze"):
        return _admin(args)
    if args.command == "terminology":
        from .tools.rxnorm_build import run as build_terminology
        return build_terminology(args, argv[2:])
    if args.command == "demo-fhir":
        return _demo_fhir(args)
    if args.command == "evaluate":
        from .evaluate_command import run
        return run(args)
    if args.command == "db":
        return _db(args)
    if args.command == "export-ndjson":
        return _export_ndjson(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "docs":
        return _docs(args)
    return _lint(args)


def _population_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The options of `evaluate FOLDER`: outputs, privacy, and where it runs (issue 15)."""
    folder = evaluate.add_argument_group("a folder (Bundles, requests, or a Bulk FHIR NDJSON export)")
    folder.add_argument("--csv", type=Path, metavar="FILE", help="write one row per patient and hook as CSV")
    folder.add_argument("--parquet", type=Path, metavar="FILE", help="the same rows as Parquet")
    folder.add_argument("--html", type=Path, metavar="FILE", help="write the report with its plots as one HTML file")
    folder.add_argument("--show-ids", action="store_true",
                        help="rows carry patient ids and file names (default: a hashed key, no PHI)")
    folder.add_argument("--workers", type=int, metavar="N", help="processes (default: every core); Dask: workers "
                                                                  "of the local cluster")
    folder.add_argument("--engine", choices=["local", "dask"], default="local",
                        help="local (processes on this machine, default) or dask (a Dask distributed cluster)")
    folder.add_argument("--scheduler", default="local", metavar="ADDRESS",
                        help="the Dask scheduler (tcp://host:8786), or local for a LocalCluster (default)")
    folder.add_argument("--quiet", action="store_true", help="no progress bar")


def _docs(args: argparse.Namespace) -> int:
    from .knowledge.docs import all_pages, rule_language_files
    from .knowledge.loader import load_knowledge

    knowledge_dir = Settings.from_env().knowledge_dir
    try:  # the rule schema first: the knowledge is read against it, and a new criterion kind's rules need it
        language = {path: text for path, text in rule_language_files(knowledge_dir).items()
                    if path.read_text(encoding="utf-8") != text}
        if not args.check:
            for path, text in language.items():
                path.write_text(text, encoding="utf-8")
        knowledge = load_knowledge(knowledge_dir)
    except (KnowledgeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    pages = all_pages(knowledge)
    stale = [p for p, text in pages.items() if not (args.out / p).is_file() or (args.out / p).read_text() != text]
    generated = args.out / "knowledge"
    extra = [str(p.relative_to(args.out)) for p in generated.glob("*.md")
             if str(p.relative_to(args.out)) not in pages] if generated.is_dir() else []
    try:
        readme = _readme_with_settings_table(args.readme)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check:
        for p in stale + extra:
            print(f"{args.out / p}: not current; run spasm-cds docs", file=sys.stderr)
        if readme is not None:
            print(f"{args.readme}: the settings table is not current; run spasm-cds docs", file=sys.stderr)
        for path in language:
            print(f"{path}: not current with the criterion kinds; run spasm-cds docs", file=sys.stderr)
        return 1 if stale or extra or readme is not None or language else 0
    generated.mkdir(parents=True, exist_ok=True)
    for p in extra:
        (args.out / p).unlink()
    for p in stale:
        (args.out / p).write_text(pages[p])
    if readme is not None:
        args.readme.write_text(readme)
    table = "rewritten" if readme is not None else "current" if args.readme.is_file() else "skipped"
    print(f"wrote {len(stale)} page(s), removed {len(extra)}; {len(pages)} pages in {args.out}; settings table in "
          f"{args.readme}: {table}; rule schema and kinds table: {len(language)} rewritten")
    return 0


def _readme_with_settings_table(readme: Path) -> str | None:
    """The README's new text when its settings table is stale, None when it is current or there is no README
    (then a note says so). ValueError when the README lacks the table's markers."""
    from .tools.settings_doc import with_settings_table

    if not readme.is_file():
        print(f"{readme}: not found; the settings table was not checked", file=sys.stderr)
        return None
    text = readme.read_text(encoding="utf-8")
    wanted = with_settings_table(text, str(readme))
    return wanted if wanted != text else None


def _demo_fhir(args: argparse.Namespace) -> int:
    from datetime import date

    import requests

    from .bundles import cramp_condition
    from .knowledge.loader import load_knowledge
    from .tools import demo_fhir as fhir

    settings = Settings.from_env()
    cache = args.cache or fhir.default_cache()
    today = date.today()
    extra = None
    try:
        if args.assume_cramps:
            knowledge = load_knowledge(settings.knowledge_dir)
            extra = lambda patient_id: [cramp_condition(knowledge, patient_id, today)]  # noqa: E731 - rebinds extra (None above)
        if not fhir.sekmet_installed(cache):
            print(f"installing {fhir.SEKMET_REQUIREMENT} into {cache / 'venv-sekmet'} (first run only)", flush=True)
        sekmet = fhir.ensure_sekmet(cache)
        workdir = (args.workdir or settings.data_dir / "demo-fhir").resolve()
        with fhir.SekmetProcess(sekmet, workdir, args.port, args.base_url or f"http://localhost:{args.port}/fhir") \
                as server:
            loaded = [] if args.no_demo_patients else fhir.load_demo_patients(server.local_url, today)
            for path in fhir.bundle_files(args.bundles):
                loaded += fhir.load_bundle_file(server.local_url, path, extra)
            print(f"FHIR R4 server at {server.base_url} (sekmet-fhir on 127.0.0.1:{args.port}, log "
                  f"{server.log_path}), {len(loaded)} patient(s):")
            for patient in loaded:
                print(f"  {patient.id:<38} {patient.name:<28} {patient.source}")
            if loaded:
                link = fhir.sandbox_link(args.sandbox_url, server.base_url, args.service_url, loaded[0].id)
                print(f"CDS Hooks Sandbox on this server and {args.service_url}:\n  {link}")
            print("Ctrl-C stops it; the next start begins with an empty database.", flush=True)
            return server.wait()
    except (KnowledgeError, RuntimeError, TimeoutError, ValueError, requests.RequestException) as exc:
        print(exc, file=sys.stderr)
        return 1


def _admin(args: argparse.Namespace) -> int:
    """`feedback report` and `snooze ...` (admin_command.py)."""
    from .admin_command import run_feedback, run_snooze
    from .telemetry import configure_logging

    try:
        configure_logging(Settings.from_env().log_level)
        return run_feedback(args) if args.command == "feedback" else run_snooze(args)
    except (KnowledgeError, ValueError) as exc:
        print(f"spasm-cds {args.command}: {exc}", file=sys.stderr)
        return 2


def _export_ndjson(args: argparse.Namespace) -> int:
    from .bundles import InputError
    from .population.ndjson import export_bundles

    files = sorted(q for p in args.bundles for q in (p.rglob("*.json") if p.is_dir() else [p]))
    if args.copies < 1 or not files:
        print("give Bundle files (or folders of them) and --copies of 1 or more", file=sys.stderr)
        return 2
    try:
        patients = export_bundles(files, args.out, args.copies)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{patients} patient(s) from {len(files)} Bundle(s) written to {args.out}")
    return 0


def _db(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from .state import open_database

    url = Settings.from_env().effective_database_url
    open_database(url)
    print(f"database at the newest revision: {make_url(url).render_as_string(hide_password=True)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(host=args.host, port=args.port, workers=args.workers)
        if settings.proxy == "nginx" and not args.dev and not args.unix_socket:
            from .proxy import find_nginx, supervise
            nginx = find_nginx()
            if nginx is None:
                raise ValueError("SPASM_CDS_PROXY=nginx but nginx is not installed (Debian: apt-get install "
                                 "nginx-light)")
            return supervise(settings, nginx)
        if not args.dev:
            _prepare_metrics_dir(settings.data_dir)
        from . import create_app
        app = create_app(settings)
    except (KnowledgeError, ValueError) as exc:
        # a setting or the knowledge is wrong: say which, without a traceback
        print(f"spasm-cds: cannot start: {exc}", file=sys.stderr)
        return 2
    if args.dev:
        app.run(host=settings.host, port=settings.port)
        return 0
    from gunicorn.app.base import BaseApplication

    from . import gunicorn_conf

    class _Server(BaseApplication):
        def load_config(self) -> None:
            for key in ("worker_class", "threads", "preload_app", "timeout", "graceful_timeout", "keepalive",
                        "accesslog", "errorlog", "child_exit", "pre_fork"):
                self.cfg.set(key, getattr(gunicorn_conf, key))
            self.cfg.set("bind", f"unix:{args.unix_socket}" if args.unix_socket else f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)

        def load(self):
            return app

    _Server().run()
    return 0


def _prepare_metrics_dir(data_dir: Path) -> None:
    """An empty folder for this server's worker metric files, exported before prometheus_client is first imported
    (it picks its multiprocess mode at import) and before gunicorn forks. One folder per server process, so that
    servers sharing a data dir do not mix or wipe each other's counts; folders of servers that are gone are removed."""
    root = (data_dir / "prometheus").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and not Path(f"/proc/{old.name}").exists():
            shutil.rmtree(old, ignore_errors=True)
    folder = root / str(os.getpid())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def identity_failures(knowledge) -> list[str]:
    """The drug identity cases that do not resolve as they must."""
    from .knowledge.identity import case_problem

    rxnorm, snomed = knowledge.systems["rxnorm"][0], knowledge.systems["snomed"][0]
    return [f"mappings/identity-cases.yaml: {case.name}: {problem}" for case in knowledge.identity_cases
            if (problem := case_problem(case, knowledge.terminology, rxnorm, snomed))]


def _lint(args: argparse.Namespace) -> int:
    from .case_runner import run_case
    from .knowledge.lint import card_texts, copied_runs, suggestion_problems, uncoded_ingredients, unused_sources
    from .knowledge.loader import load_knowledge

    root = args.knowledge_dir or Settings.from_env().knowledge_dir
    try:
        knowledge = load_knowledge(root)
    except KnowledgeError as exc:
        print(exc, file=sys.stderr)
        return 1
    failures = []
    for case in knowledge.cases:
        problem = run_case(knowledge, case).problem
        if problem:
            failures.append(f"cards/{knowledge.rules[case.rule].group}/{case.rule}.cases.yaml: {case.name}: {problem}")
    failures += identity_failures(knowledge)
    failures += suggestion_problems(knowledge.concepts, knowledge.systems["loinc"][0])
    if args.seeds:
        seed_texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(args.seeds.glob("*.txt"))]
        failures += copied_runs(card_texts(knowledge), seed_texts)
    for sid in unused_sources(knowledge.rules, knowledge.concepts, knowledge.sources,
                              knowledge.terminology.dosing.sources):
        print(f"warning: cards/sources.yaml: {sid!r} is cited by no rule or concept")
    for warning in uncoded_ingredients(knowledge.concepts, knowledge.product_ingredients):
        print(f"warning: {warning}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"ok: {len(knowledge.concepts)} concepts, {len(knowledge.rules)} rules, {len(knowledge.cases)} cases, "
          f"{len(knowledge.identity_cases)} drug identity cases, {len(knowledge.services)} services")
    return 0
