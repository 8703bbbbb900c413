"""Patients per second of `spasm-cds evaluate` on a Bulk NDJSON export (issue 15).

Usage:
  .venv/bin/python bench/population.py [--copies 20] [--bundles ../shared/synthea/bundles] [--runs 1] [--smoke]
                                      [--variant '2 processes' ...]

Writes the Synthea bundles `--copies` times with new ids as one NDJSON export (the types the rules read, as
`spasm-cds export-ndjson` writes them), then times `spasm-cds evaluate EXPORT --json --quiet --assume-cramps` as a
fresh process (start-up and knowledge loading included) on 1 worker, 2 workers, and a Dask LocalCluster of 2
worker processes (cluster start included). Checks that all three count the same cards per rule, and prints a
Markdown table: wall seconds (median of --runs), patients/s, patients/s per core, CPU seconds (the process and its
workers; on a shared machine the fairer measure of cost) and patients per CPU second, and the time a 50,000-patient
export would take at that rate. Timings are never judged.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cds_service.bundles import KIND_OF_TYPE  # noqa: E402 - after the path is set
from cds_service.population.ndjson import export_bundles  # noqa: E402 - after the path is set

VARIANTS = (("1 process", 1, ["--workers", "1"]), ("2 processes", 2, ["--workers", "2"]),
            ("Dask LocalCluster, 2 workers", 2, ["--engine", "dask", "--scheduler", "local", "--workers", "2"]))


def timed(export: Path, options: list[str]) -> tuple[float, float, dict]:
    """Wall seconds and CPU seconds (user + system, the process and the workers it waited for) of one evaluate
    process, and its figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cds_service", "evaluate", str(export), "--json", "--quiet",
                           "--assume-cramps", "--today", "2026-06-01", *options], capture_output=True, text=True,
                          env={**os.environ, "SPASM_CDS_KNOWLEDGE_DIR": str(REPO), "SPASM_CDS_LOG_LEVEL": "WARNING"},
                          check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"evaluate failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--bundles", type=Path, default=REPO.parent / "shared" / "synthea" / "bundles")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="one copy, one run (CI)")
    parser.add_argument("--variant", action="append", choices=[label for label, _, _ in VARIANTS],
                        help="run only this variant (repeat for several; default: all three)")
    args = parser.parse_args()
    copies, runs = (1, 1) if args.smoke else (args.copies, args.runs)
    with tempfile.TemporaryDirectory(prefix="spasm-cds-bench-") as work:
        export = Path(work) / "export"
        started = time.perf_counter()
        patients = export_bundles(sorted(args.bundles.glob("*.json")), export, copies, types=set(KIND_OF_TYPE))
        size = sum(p.stat().st_size for p in export.iterdir())
        print(f"{patients} patients, {size / 2**20:.0f} MiB of NDJSON written in {time.perf_counter() - started:.1f} s;"
              f" {os.cpu_count()} cores on this machine", file=sys.stderr)
        rows = []
        counts = []
        for label, cores, options in (v for v in VARIANTS if not args.variant or v[0] in args.variant):
            seconds, cpus = [], []
            for _ in range(runs):
                wall, cpu, figures = timed(export, options)
                seconds.append(wall)
                cpus.append(cpu)
            counts.append(figures["findings_by_rule"])
            assert figures["patients"] == patients, (label, figures["patients"])
            wall, cpu = statistics.median(seconds), statistics.median(cpus)
            rate = patients / wall
            rows.append(f"| {label} | {patients} | {wall:.1f} | {rate:.0f} | {rate / cores:.0f} | {cpu:.1f} | "
                        f"{patients / cpu:.0f} | {50_000 / rate / 60:.1f} |")
            print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
        assert all(c == counts[0] for c in counts), "the variants count different cards per rule"
    print("| run on | patients | wall s | patients/s | patients/s per core | CPU s | patients per CPU s | "
          "50,000 patients at this rate, min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
