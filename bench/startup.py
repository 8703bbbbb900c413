"""Start-up time, first-call time and memory of the service at one or more commits or settings (issue 16).

Usage:
  .venv/bin/python bench/startup.py --variant now=HEAD [--variant before=<rev>] \
      [--variant 'one-worker=HEAD:SPASM_CDS_WORKERS=1'] [--runs 3] [--calls 20] [--smoke]

Each variant (LABEL=REV[:SPASM_CDS_NAME=VALUE,...], as in bench/compare.py) is started `--runs` times as
`python -m cds_service serve --workers N` (N: the variant's SPASM_CDS_WORKERS, else 2) from its own tree on
127.0.0.1, with a private data folder: a new database, or with --migrated one that `spasm-cds db upgrade` has
already brought to the newest migration (a restart). Per start it measures (de-duplication off, so every call
renders its cards): seconds from launch until /healthz answers 200 and all workers are up; the first patient-view
call (the demo patient with contributors, prefetch complete) and the median of the next `--calls`; and the memory
once those calls are done, from /proc/PID/smaps_rollup: for the whole process tree RSS summed (what `ps` shows,
shared pages counted in every process) and PSS summed (shared pages divided among the processes that share them:
what the tree really costs); for the master its RSS; per worker (mean) its RSS, PSS and private memory (pages no
other process maps: what each further worker adds, the copy-on-write pages it has written since the fork included).
Variants alternate within each run. Prints a Markdown table of the medians over the runs; nothing is written;
timings are never judged. bench/peers.py uses the same measurement for other CDS Hooks services.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.compare import Variant, checkout, parse_variant  # noqa: E402
from bench.run import WORKERS, BenchError, Server, children, commit, machine, post_json  # noqa: E402
from cds_service.demo import demo_bundle, hook_request, load_demos  # noqa: E402
from cds_service.knowledge.loader import load_knowledge  # noqa: E402
from cds_service.settings import Settings  # noqa: E402

FOLLOWING = 20
SERVICE = "spasm-cramps-patient-view"


def smaps(pid: int) -> dict[str, float]:
    """A process's /proc/PID/smaps_rollup figures (Rss, Pss, Private_Dirty, ...) in MiB; empty when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {parts[0].rstrip(":"): int(parts[1]) / 1024 for parts in map(str.split, lines) if len(parts) == 3}


def tree_memory(root: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over a process and all its descendants, from /proc."""
    rss = pss = 0.0
    for pid in tree(root):
        figures = smaps(pid)
        rss += figures.get("Rss", 0.0)
        pss += figures.get("Pss", 0.0)
    return rss, pss


def tree(root: int) -> list[int]:
    """A process and all its descendants."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        queue += children(pid)
    return pids


def memory(root: int) -> dict[str, float]:
    """Memory of a server's process tree: the tree's RSS and PSS summed, the root's RSS and PSS, and the mean RSS, PSS
    and private memory (Private_Clean + Private_Dirty) of the root's children (gunicorn's workers; none for a server
    of one process, whose own private memory is then reported)."""
    rss, pss = tree_memory(root)
    master, kids = smaps(root), [smaps(pid) for pid in children(root)]
    workers = [k for k in kids if k] or [master]

    def mean(key: str) -> float:
        return statistics.mean(w.get(key, 0.0) for w in workers)
    return {"rss_mib": rss, "pss_mib": pss, "master_rss_mib": master.get("Rss", 0.0),
            "worker_rss_mib": mean("Rss"), "worker_pss_mib": mean("Pss"),
            "worker_private_mib": mean("Private_Clean") + mean("Private_Dirty")}


def calls_and_memory(process_pid: int, url: str, body: dict, calls: int, label: str) -> dict[str, float]:
    """The first call and the median of `calls` more (each must answer 200 with cards), then memory()."""
    timings = []
    for _ in range(1 + calls):
        status, answer, took = post_json(url, {**body, "hookInstance": str(uuid.uuid4())})
        if status != 200 or not answer.get("cards"):
            raise BenchError(f"{label}: the call answered {status}: {json.dumps(answer)[:300]}")
        timings.append(took)
    return {"first_ms": timings[0], "next_ms": statistics.median(timings[1:]), **memory(process_pid)}


def workers_of(variant: Variant) -> int:
    return int(variant.env.get("SPASM_CDS_WORKERS", WORKERS))


def one_start(variant: Variant, body: dict, workdir: Path, run: int, calls: int = FOLLOWING,
              migrated: bool = False) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPASM_CDS_") and k != "PYTHONPATH"}
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(variant.tree),
                "SPASM_CDS_DATA_DIR": str(workdir / f"data-{variant.label}-{run}"),
                "SPASM_CDS_DEDUPLICATE": "off", **variant.env})  # every call renders its cards
    if migrated:  # a restart: the database is already at the newest migration, as in production
        subprocess.run([sys.executable, "-m", "cds_service", "db", "upgrade"], cwd=variant.tree, env=env, check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
    workers = workers_of(variant)
    server = Server(f"{variant.label}-{run}", [sys.executable, "-m", "cds_service", "serve", "--host",
                                                "127.0.0.1", "--port", "{port}", "--workers", str(workers)],
                    workdir, env, cwd=variant.tree)
    started = time.perf_counter()
    server.start()
    try:
        server.wait_ready(workers=workers)
        ready_s = time.perf_counter() - started
        assert server.process is not None
        return {"ready_s": ready_s, **calls_and_memory(server.process.pid, f"{server.url}/cds-services/{SERVICE}",
                                                       body, calls, variant.label)}
    finally:
        server.stop()


def demo_body() -> dict:
    """The patient-view request every start is called with: the demo patient with contributors, prefetch complete."""
    knowledge = load_knowledge(Settings().knowledge_dir)
    demo = next(d for d in load_demos().patients if d.id == "contributors")
    return hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]


HEADER = ("| variant | tree | settings | workers | ready s | first call ms | next calls ms (median) | tree RSS MiB | "
          "tree PSS MiB | master RSS MiB | worker RSS MiB | worker PSS MiB | worker private MiB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(label: str, tree_sha: str, settings: str, workers: int, rows: list[dict[str, float]]) -> str:
    """One table line: the medians over the starts."""
    def mid(key: str) -> float:
        return statistics.median(r[key] for r in rows)
    return (f"| {label} | {tree_sha} | {settings} | {workers} | {mid('ready_s'):.2f} | {mid('first_ms'):.0f} | "
            f"{mid('next_ms'):.1f} | {mid('rss_mib'):.0f} | {mid('pss_mib'):.0f} | {mid('master_rss_mib'):.0f} | "
            f"{mid('worker_rss_mib'):.0f} | {mid('worker_pss_mib'):.0f} | {mid('worker_private_mib'):.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=FOLLOWING, help="calls after the first (default %(default)s)")
    parser.add_argument("--migrated", action="store_true",
                        help="start on a database already migrated (a restart); default: a new database")
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    body = demo_body()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spasm-cds-startup-")))
        results: dict[str, list[dict[str, float]]] = {v.label: [] for v in args.variant}
        try:
            for v in args.variant:
                checkout(v, workdir, stack)
            for run in range(runs):
                for v in (args.variant if run % 2 == 0 else args.variant[::-1]):
                    results[v.label].append(one_start(v, body, workdir, run, args.calls, args.migrated))
                    print(f"startup: {v.label} run {run + 1}: {results[v.label][-1]}", file=sys.stderr)
        except BenchError as problem:
            print(f"startup: {problem}", file=sys.stderr)
            return 1
        lines = [f"`bench/startup.py` on {date.today().isoformat()} from {commit()}, {runs} start(s) per variant "
                 f"(alternating), {args.calls} calls after the first, "
                 f"{'a database already migrated' if args.migrated else 'a new database'}. {machine()}.", "", HEADER]
        for v in args.variant:
            settings = ", ".join(f"{k}={x}" for k, x in v.env.items()) or "defaults"
            lines.append(row(v.label, v.sha, settings, workers_of(v), results[v.label]))
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
