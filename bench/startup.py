"""Start-up time, first-call time and memory of the service at one or more commits or settings (issue 16).

Usage:
  .venv/bin/python bench/startup.py --variant now=HEAD [--variant before=<rev>] [--runs 3] [--smoke]

Each variant (LABEL=REV[:SPASM_CDS_NAME=VALUE,...], as in bench/compare.py) is started `--runs` times as
`python -m cds_service serve --workers 2` from its own tree on 127.0.0.1, with a private data folder. Per start it
measures (de-duplication off, so every call renders its cards): seconds from launch until /healthz answers 200 and
both workers are up; the first patient-view call (the demo patient with contributors, prefetch complete) and the
median of the next 20; and the memory of the whole process tree once those calls are done: RSS summed (what `ps`
shows, shared pages counted in every process) and PSS summed (shared pages divided among the processes that share
them: what the tree really costs). Variants alternate within each run. Prints a Markdown table of the medians over
the runs; nothing is written; timings are never judged.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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

from bench.compare import TreeServer, Variant, checkout, parse_variant  # noqa: E402
from bench.run import WORKERS, BenchError, children, commit, machine, post_json  # noqa: E402
from cds_service.demo import demo_bundle, hook_request, load_demos  # noqa: E402
from cds_service.knowledge.loader import load_knowledge  # noqa: E402
from cds_service.settings import Settings  # noqa: E402

FOLLOWING = 20
SERVICE = "spasm-cramps-patient-view"


def tree_memory(root: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over a process and all its descendants, from /proc."""
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        queue += children(pid)
    rss = pss = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return rss, pss


def one_start(variant: Variant, body: dict, workdir: Path, run: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPASM_CDS_") and k != "PYTHONPATH"}
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(variant.tree),
                "SPASM_CDS_DATA_DIR": str(workdir / f"data-{variant.label}-{run}"),
                "SPASM_CDS_DEDUPLICATE": "off", **variant.env})  # every call renders its cards
    server = TreeServer(f"{variant.label}-{run}", [sys.executable, "-m", "cds_service", "serve", "--host",
                                                    "127.0.0.1", "--port", "{port}", "--workers", str(WORKERS)],
                        workdir, env, variant.tree)
    started = time.perf_counter()
    server.start()
    try:
        server.wait_ready()
        ready_s = time.perf_counter() - started
        url = f"{server.url}/cds-services/{SERVICE}"
        timings = []
        for _ in range(1 + FOLLOWING):
            status, answer, took = post_json(url, {**body, "hookInstance": str(uuid.uuid4())})
            if status != 200 or not answer.get("cards"):
                raise BenchError(f"{variant.label}: the call answered {status}: {json.dumps(answer)[:300]}")
            timings.append(took)
        assert server.process is not None
        rss, pss = tree_memory(server.process.pid)
        return {"ready_s": ready_s, "first_ms": timings[0], "next_ms": statistics.median(timings[1:]),
                "rss_mib": rss, "pss_mib": pss}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args(argv)
    runs = 1 if args.smoke else args.runs
    knowledge = load_knowledge(Settings().knowledge_dir)
    demo = next(d for d in load_demos().patients if d.id == "contributors")
    body = hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spasm-cds-startup-")))
        results: dict[str, list[dict[str, float]]] = {v.label: [] for v in args.variant}
        try:
            for v in args.variant:
                checkout(v, workdir, stack)
            for run in range(runs):
                for v in (args.variant if run % 2 == 0 else args.variant[::-1]):
                    results[v.label].append(one_start(v, body, workdir, run))
                    print(f"startup: {v.label} run {run + 1}: {results[v.label][-1]}", file=sys.stderr)
        except BenchError as problem:
            print(f"startup: {problem}", file=sys.stderr)
            return 1
        lines = [f"`bench/startup.py` on {date.today().isoformat()} from {commit()}, {runs} start(s) per variant "
                 f"(alternating), 2 workers, {FOLLOWING} calls after the first. {machine()}.", "",
                 "| variant | tree | settings | ready s | first call ms | next calls ms (median) | "
                 "tree RSS MiB | tree PSS MiB |", "|---|---|---|---|---|---|---|---|"]
        for v in args.variant:
            rows = results[v.label]

            def mid(key: str, rows=rows) -> float:
                return statistics.median(r[key] for r in rows)
            settings = ", ".join(f"{k}={x}" for k, x in v.env.items()) or "defaults"
            lines.append(f"| {v.label} | {v.sha} | {settings} | {mid('ready_s'):.2f} | {mid('first_ms'):.0f} | "
                         f"{mid('next_ms'):.1f} | {mid('rss_mib'):.0f} | {mid('pss_mib'):.0f} |")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
