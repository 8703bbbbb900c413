"""Where the patients are evaluated: in this process (--workers 1), on a pool of processes on this machine (every
core by default), or on a Dask distributed cluster (--engine dask) when one machine is not enough.

On Dask the export's files are read in parallel (one partition per file: a Bulk export splits large types into
several files) and the patient grouping is Dask's task-based shuffle (Bag.groupby), so no machine holds the whole
export. All three give the same rows, sorted by patient key, hook and file."""
from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ndjson import (
    Census,
    evaluate_bucket,
    evaluate_group,
    is_read,
    ndjson_files,
    partition_range,
    patient_of,
    records,
    records_between,
    resources_of,
)
from .patients import Job, PatientRow, evaluate_file

_FILES_PER_TASK = 4
_BUCKET_BYTES = 32 * 2**20  # about this much NDJSON per bucket a worker holds in memory at once
_RANGE_BYTES = 64 * 2**20  # a Dask partition reads this much of a file
Advance = Callable[[str, int, int], None]  # (phase, done, total): what a progress bar is told


@dataclass(frozen=True)
class Population:
    """The rows of every patient and hook, and what reading the input found (the report's `input` section)."""

    rows: list[PatientRow]
    input: dict[str, Any]


def input_format(path: Path) -> str:
    """ndjson when the folder holds *.ndjson files (a Bulk export), else bundles (*.json: Bundles or requests)."""
    return "ndjson" if ndjson_files(path) else "bundles"


def bundle_files(folder: Path) -> list[Path]:
    """The *.json files under the folder, sorted."""
    return sorted(p for p in folder.rglob("*.json") if p.is_file())


def default_workers() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_local(folder: Path, job: Job, workers: int, advance: Advance | None = None) -> Population:
    """Every patient of the folder on `workers` processes (1: in this process). NdjsonError on a bad line."""
    with _pool(workers) as pool:
        if input_format(folder) == "ndjson":
            return _ndjson_local(folder, job, pool, workers, advance)
        files = bundle_files(folder)
        tasks = [[(p, str(p.relative_to(folder))) for p in files[i:i + _FILES_PER_TASK]]
                 for i in range(0, len(files), _FILES_PER_TASK)]
        rows = _rows(_results(pool, _evaluate_files, [(task, job) for task in tasks]), len(files), advance)
        return Population(rows=rows, input={"format": "bundles", "files_read": len(files)})


def run_dask(folder: Path, job: Job, scheduler: str, workers: int) -> Population:
    """Every patient of the folder on a Dask cluster: `scheduler` is its address, or "local" for a LocalCluster of
    `workers` processes on 127.0.0.1 (no dashboard). The folder must be readable by every worker."""
    import dask
    import dask.bag as bag

    with _dask_client(scheduler, workers):
        if input_format(folder) == "bundles":
            paths = bundle_files(folder)
            named = [(str(p), str(p.relative_to(folder))) for p in paths]
            found = bag.from_sequence(named, partition_size=_FILES_PER_TASK).map(
                lambda pair: evaluate_file(Path(pair[0]), job, pair[1])).flatten()
            return Population(rows=_sorted(found.compute()), input={"format": "bundles", "files_read": len(paths)})
        census = Census()
        files: list[str] = []
        for path in ndjson_files(folder):
            (files if is_read(path) else census.files_skipped).append(str(path.relative_to(folder)))
        census.files_read = files
        medications: dict[str, dict[str, Any]] = {}
        mixed = [f for f in files if _may_hold_medications(f)]
        if mixed:
            found_medications = bag.from_sequence(mixed, npartitions=len(mixed)).map_partitions(
                _medications_in, str(folder))
            medications = dict(found_medications.compute())
        ranges = [(name, start, min(start + _RANGE_BYTES, size)) for name in files
                  for size in [(folder / name).stat().st_size] for start in range(0, max(size, 1), _RANGE_BYTES)]
        items = bag.from_sequence(ranges, npartitions=max(1, len(ranges))).map_partitions(_read_ranges, str(folder))
        tallies = items.filter(lambda item: item[0] is None).pluck(1)
        held = items.filter(lambda item: item[0] is not None)
        grouped = held.groupby(lambda item: item[0], shuffle="tasks", npartitions=max(2, len(ranges), workers * 2))
        found = grouped.map(lambda group: evaluate_group(group[0], resources_of(b for _, b in group[1]),
                                                         medications, job))
        rows, counted = dask.compute(found.flatten(), tallies)
        for tally in counted:
            for tagged, n in tally.items():
                tag, kind = tagged.split("\t")
                census.resources[kind] += n
                if tag == "orphan":
                    census.without_patient[kind] += n
                census.patients += n if kind == "Patient" and tag == "patient" else 0
        census.medications = medications
        return Population(rows=_sorted(rows), input=census.figures())


def _ndjson_local(folder: Path, job: Job, pool: ProcessPoolExecutor | None, workers: int,
                  advance: Advance | None) -> Population:
    """Two rounds on the pool: each byte range of the export is split into bucket files by patient (in parallel),
    then each bucket (its parts from every range) is grouped and evaluated."""
    census = Census()
    read: list[Path] = []
    for path in ndjson_files(folder):
        (read if is_read(path) else []).append(path)
        (census.files_read if is_read(path) else census.files_skipped).append(str(path.relative_to(folder)))
    size = sum(p.stat().st_size for p in read)
    buckets = max(workers * 4, size // _BUCKET_BYTES + 1)
    step = max(2**20, min(_RANGE_BYTES, size // (workers * 4) + 1))
    ranges = [(path, str(path.relative_to(folder)), start, min(start + step, path.stat().st_size))
              for path in read for start in range(0, max(path.stat().st_size, 1), step)]
    with tempfile.TemporaryDirectory(prefix="spasm-cds-ndjson-") as work:
        done = 0
        for index, part in _results(pool, _split_range, [((r, Path(work), buckets, i), None)
                                                          for i, r in enumerate(ranges)]):
            census.add(part)
            done += ranges[index][3] - ranges[index][2]
            if advance:
                advance("reading", done, size)
        parts = sorted(Path(work).iterdir())
        by_bucket = [[p for p in parts if p.name.startswith(f"bucket-{b:05d}-")] for b in range(buckets)]
        tasks = [((own, census.medications), job) for own in by_bucket if own]
        rows = _rows(_results(pool, _evaluate_bucket, tasks), census.patients, advance)
    return Population(rows=rows, input=census.figures())


def _rows(results: Iterator[list[PatientRow]], total: int, advance: Advance | None) -> list[PatientRow]:
    """Every task's rows, sorted; the progress bar told patients as tasks finish."""
    rows: list[PatientRow] = []
    done = 0
    for found in results:
        rows += found
        done += len({(r.patient, r.source) for r in found})
        if advance:
            advance("patients", done, total)
    return _sorted(rows)


@contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of spawned processes (no state leaks in from this one), or None to work in this process."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _results(pool: ProcessPoolExecutor | None, work: Callable[[Any, Any], Any],
             tasks: Sequence[tuple[Any, Any]]) -> Iterator[Any]:
    """work(*task) for every task, in this process or on the pool, as they finish; the first failure cancels the
    rest."""
    if pool is None:
        for task in tasks:
            yield work(*task)
        return
    futures: list[Future[Any]] = [pool.submit(work, *task) for task in tasks]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def _split_range(task: tuple[tuple[Path, str, int, int], Path, int, int], _: None) -> tuple[int, Census]:
    (path, name, start, end), work, buckets, index = task
    return index, partition_range(path, name, start, end, work, buckets, index)


def _evaluate_files(task: list[tuple[Path, str]], job: Job) -> list[PatientRow]:
    return [row for path, name in task for row in evaluate_file(path, job, name)]


def _evaluate_bucket(task: tuple[list[Path], dict[str, dict[str, Any]]], job: Job) -> list[PatientRow]:
    return evaluate_bucket(task[0], task[1], job)


def _sorted(rows: Sequence[PatientRow]) -> list[PatientRow]:
    return sorted(rows, key=lambda r: (r.patient, r.source, r.hook))


def _may_hold_medications(name: str) -> bool:
    return not Path(name).name.startswith(("Patient", "Observation", "Condition", "MedicationRequest",
                                           "MedicationStatement"))


def _medications_in(names: list[str], folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name in names:
        for _, _, resource in records(Path(folder) / name, name):
            if resource["resourceType"] == "Medication":
                yield f"Medication/{resource.get('id')}", resource


def _read_ranges(ranges: list[tuple[str, int, int]], folder: str) -> list[tuple[str | None, Any]]:
    """A partition's byte ranges as (patient, its lines joined) per patient, and one (None, tally) item: resources
    by "tag<TAB>type", tag patient, orphan (naming no patient) or shared (Medication, joined apart). Few items and
    bytes, not one parsed resource each, go through the shuffle. A list: two computations read it."""
    lines: dict[str, list[bytes]] = {}
    tally: Counter[str] = Counter()
    for name, start, end in ranges:
        for line, resource in records_between(Path(folder) / name, name, start, end):
            kind = resource["resourceType"]
            patient = None if kind == "Medication" else patient_of(resource)
            if patient:
                lines.setdefault(patient, []).append(line)
            tally[f"{'patient' if patient else 'shared' if kind == 'Medication' else 'orphan'}\t{kind}"] += 1
    return [(None, dict(tally)), *((patient, b"\n".join(own)) for patient, own in lines.items())]


@contextmanager
def _dask_client(scheduler: str, workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler != "local":
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        yield client

