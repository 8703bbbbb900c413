"""Throughput and CPU per call of the service at several commits (or settings) in one run: the before/after figures
an issue asks for ("must not fall more than 10 %, same run").

Usage:
  .venv/bin/python bench/compare.py --variant before=dcc980c --variant after=HEAD \
      [--variant 'after-1-thread=HEAD:SPASM_CDS_THREADS=1'] [--rounds 5] [--seconds 5] [--smoke]

A variant is LABEL=REV[:NAME=VALUE,...]: REV is any git revision of this repository (checked out into a temporary
worktree that is removed on exit; HEAD means this checkout as it is, uncommitted edits included), and the optional
environment settings are applied to that server only. Every variant runs as `python -m cds_service serve` from its own
tree (its own code, knowledge and gunicorn settings; default settings otherwise, a private data folder), 2 workers, on
127.0.0.1. The requests are bench/run.py's (1) Sandbox capture, (2) ~300-resource patient-view prefetch and (3)
order-select interaction, built once by this checkout; each variant must answer each with 200 (and cards where
expected) before the load. Rounds alternate the variants (wrk -t2 -c16 for --seconds each) so drift on a shared
machine falls on all of them alike; each figure is the median round. CPU per call is the workers' user+system time
from /proc over the requests wrk counted. The table is printed as markdown; nothing is written. Timings are never
judged: the ratios are for a person to read.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fhir_standin import FhirStandIn  # noqa: E402
from bench.run import (  # noqa: E402
    WORKERS,
    BenchError,
    Load,
    Server,
    capture_request,
    commit,
    cpu_seconds,
    ensure_wrk,
    load_average,
    machine,
    median_load,
    order_request,
    patient_view_chart,
    patient_view_request,
    post_json,
    wrk,
)
from cds_service.knowledge.loader import load_knowledge  # noqa: E402
from cds_service.settings import Settings  # noqa: E402


@dataclasses.dataclass
class Variant:
    label: str
    rev: str
    env: dict[str, str]
    tree: Path = REPO
    sha: str = ""
    server: Server | None = None


def parse_variant(text: str) -> Variant:
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"expected LABEL=REV[:NAME=VALUE,...], got {text!r}")
    rev, _, settings = rest.partition(":")
    env = {}
    for item in filter(None, settings.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("SPASM_CDS_"):
            raise argparse.ArgumentTypeError(f"settings are SPASM_CDS_NAME=VALUE, got {item!r}")
        env[name] = value
    return Variant(label, rev, env)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout.strip()


def checkout(variant: Variant, workdir: Path, stack: ExitStack) -> None:
    if variant.rev == "HEAD":
        dirty = " + uncommitted edits" if git("status", "--porcelain", "--untracked-files=no") else ""
        variant.sha = git("rev-parse", "--short", "HEAD") + dirty
        return
    variant.sha = git("rev-parse", "--short", variant.rev)
    tree = workdir / f"tree-{variant.label}"
    git("worktree", "add", "--detach", "--quiet", str(tree), variant.rev)
    stack.callback(lambda: subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                                          capture_output=True, stdin=subprocess.DEVNULL))
    variant.tree = tree


def run(variants: list[Variant], rounds: int, seconds: int, warmup: int, workdir: Path, stack: ExitStack) -> str:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"compare [{time.monotonic() - started:5.1f} s] {text}", file=sys.stderr, flush=True)

    ensure_wrk()
    today = date.today()
    knowledge = load_knowledge(Settings().knowledge_dir)
    chart, cramp = patient_view_chart(knowledge, today)
    resources = {k: list(v) for k, v in chart.resources.items()}
    resources.setdefault("conditions", []).append(cramp)
    standin = stack.enter_context(FhirStandIn(chart.patient_id, resources,
                                              {**chart.by_reference, f"Condition/{cramp['id']}": cramp}, 0.05))
    capture, _ = capture_request(knowledge, standin.base_url)
    requests = [capture, patient_view_request(knowledge, today), order_request(knowledge, today)]
    for r in requests:
        r.path = workdir / f"{r.key}.json"
        r.path.write_text(json.dumps(r.body))

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SPASM_CDS_") and k != "PYTHONPATH"}
    for v in variants:
        checkout(v, workdir, stack)
        env = {**base_env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(v.tree),
               "SPASM_CDS_DATA_DIR": str(workdir / f"data-{v.label}"), **v.env}
        v.server = Server(v.label, [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1",
                                    "--port", "{port}", "--workers", str(WORKERS)], workdir, env, cwd=v.tree)
        stack.callback(v.server.stop)
        v.server.start()
    for v in variants:
        assert v.server is not None
        v.server.wait_ready()
        for r in requests:
            status, answer, _ = post_json(f"{v.server.url}/cds-services/{r.service}", r.body)
            if status != 200 or (r.expect_cards and not answer.get("cards")):
                raise BenchError(f"{v.label} ({v.sha}) answered {r.label} with {status}: {json.dumps(answer)[:300]}")
        say(f"{v.label}: {v.sha} {' '.join(f'{k}={x}' for k, x in v.env.items())} on {v.server.url}")

    hits = standin.hits
    results: dict[str, dict[str, Load]] = {}
    for r in requests:
        say(f"{r.label}: {rounds} round(s) of {seconds} s per variant")
        assert r.path is not None  # every request's body was written for wrk above
        urls = {v.label: f"{v.server.url}/cds-services/{r.service}" for v in variants if v.server}
        if warmup:
            for url in urls.values():
                wrk(url, r.path, warmup)
        loads: dict[str, list[Load]] = {v.label: [] for v in variants}
        for i in range(rounds):
            order = variants if i % 2 == 0 else variants[::-1]  # alternate who goes first
            for v in order:
                assert v.server is not None
                workers = v.server.workers()
                before = sum(cpu_seconds(p) for p in workers)
                result = wrk(urls[v.label], r.path, seconds)
                used = sum(cpu_seconds(p) for p in workers) - before
                result = dataclasses.replace(result, cpu_ms=used / max(result.requests, 1) * 1000)
                if not result.clean:
                    raise BenchError(f"{r.label} on {v.label}: {result.bad_status} status > 399, "
                                     f"{result.socket_errors} socket errors in {result.requests} requests")
                loads[v.label].append(result)
        results[r.key] = {label: median_load(x) for label, x in loads.items()}
        line = ", ".join(f"{label} {x.rps:.0f} req/s {x.cpu_ms:.2f} ms CPU" for label, x in results[r.key].items())
        say(f"  {line}")
    if standin.hits != hits:
        raise BenchError(f"a prefetch-complete request made {standin.hits - hits} FHIR call(s) under load")

    base = variants[0].label
    lines = [f"`bench/compare.py` on {date.today().isoformat()} from {commit()}, {rounds} rounds of {seconds} s per "
             f"variant and request (wrk -t2 -c16, alternating), {time.monotonic() - started:.0f} s in all; load "
             f"average {load_average():.2f} at the end. {machine()}.", "",
             "| variant | tree | settings |", "|---|---|---|"]
    lines += [f"| {v.label} | {v.sha} | {', '.join(f'{k}={x}' for k, x in v.env.items()) or 'defaults'} |"
              for v in variants]
    lines += ["", f"| request | variant | req/s | vs {base} | worker CPU ms per call | vs {base} | p50 ms | p99 ms |",
              "|---|---|---|---|---|---|---|---|"]
    for r in requests:
        ref = results[r.key][base]
        for v in variants:
            x = results[r.key][v.label]
            lines.append(f"| {r.label} | {v.label} | {x.rps:,.0f} | {x.rps / ref.rps - 1:+.1%} | {x.cpu_ms:.2f} | "
                         f"{x.cpu_ms / ref.cpu_ms - 1:+.1%} | {x.p50:.1f} | {x.p99:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help="LABEL=REV[:SPASM_CDS_NAME=VALUE,...]; the first is the reference")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s, no warm-up")
    args = parser.parse_args(argv)
    labels = [v.label for v in args.variant]
    if len(set(labels)) != len(labels):
        parser.error("variant labels must differ")
    rounds, seconds, warmup = (1, 1, 0) if args.smoke else (args.rounds, args.seconds, 3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spasm-cds-compare-")))
        try:
            print(run(args.variant, rounds, seconds, warmup, workdir, stack))
        except BenchError as problem:
            print(f"compare: {problem}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
