"""Bulk FHIR NDJSON (the output of $export: one file per resource type, many patients mixed) -> per-patient groups.

Reading streams: byte ranges of the files are split in parallel, each line appended to one of N bucket files by a
hash of its patient, so a worker groups one bucket in memory at a time, however large the export. A line's patient
is the Patient's own id, or the `Patient/<id>` of its subject (or patient) reference. Files named for a resource
type the rules never read (Claim.ndjson, Encounter-2.ndjson) are skipped whole. Medications belong to no patient:
they are kept apart and joined to the requests that reference them. Also: export_bundles writes such an export from
Bundles (for tests and the bench), with new ids per copy when a population is replicated."""
from __future__ import annotations

import re
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from ..bundles import KIND_OF_TYPE, InputError, read_json, rewrite_references
from ..vocabulary import Hook
from .patients import Job, PatientRow, chart_of_resources, evaluate_chart, patient_key

_TYPE_NAME = re.compile(r"^([A-Z][A-Za-z]+)(?:[._-]|$)")
_TAB = b"\t"


class NdjsonError(InputError):
    """A line that is not one JSON resource; the message names file:line."""


@dataclass
class Census:
    """What reading the export found, for the report: files read and skipped, resources per type, resources of a
    patient-held type that name no patient (left out), the shared Medications, the patients."""

    files_read: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    resources: Counter[str] = field(default_factory=Counter)
    without_patient: Counter[str] = field(default_factory=Counter)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    patients: int = 0

    def add(self, other: Census) -> None:
        """Count another part of the export in."""
        self.resources.update(other.resources)
        self.without_patient.update(other.without_patient)
        self.medications.update(other.medications)
        self.patients += other.patients

    def figures(self) -> dict[str, Any]:
        """As plain data (the report's `input` section)."""
        return {"format": "ndjson", "files_read": len(self.files_read), "files_skipped": sorted(self.files_skipped),
                "resources_by_type": dict(sorted(self.resources.items())),
                "resources_without_patient": dict(sorted(self.without_patient.items())),
                "medications_shared": len(self.medications)}


def ndjson_files(folder: Path) -> list[Path]:
    """The export's *.ndjson files under the folder, sorted."""
    return sorted(p for p in folder.rglob("*.ndjson") if p.is_file())


def is_read(path: Path) -> bool:
    """Whether a file may hold resources the rules read: its name is not that of another resource type."""
    match = _TYPE_NAME.match(path.name)
    return match is None or match.group(1) in KIND_OF_TYPE


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The patient a resource belongs to: a Patient's id, else the id of its `Patient/<id>` subject or patient."""
    if resource.get("resourceType") == "Patient":
        return str(resource["id"]) if resource.get("id") else None
    for holder in ("subject", "patient"):
        reference = (resource.get(holder) or {}).get("reference") if isinstance(resource.get(holder), dict) else None
        if isinstance(reference, str) and "Patient/" in reference:
            return reference.rpartition("Patient/")[2].split("/")[0] or None
    return None


def _resource(line: bytes, name: str, line_number: Callable[[], int]) -> dict[str, Any]:
    """The FHIR resource on an NDJSON line; NdjsonError naming name:line (the number worked out only then) if not."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise NdjsonError(f"{name}:{line_number()}: not a JSON line ({exc})") from None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise NdjsonError(f"{name}:{line_number()}: not a FHIR resource (no resourceType)")
    return resource


def records(path: Path, name: str) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """(line number, line, resource) for each non-blank line; NdjsonError naming name:line on a bad one."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            yield number, line.rstrip(b"\r\n"), _resource(line, name, partial(int, number))


def records_between(path: Path, name: str, start: int, end: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(line, resource) for the lines that start at a byte in [start, end): a byte range of a large file, for a
    partition of a cluster. NdjsonError naming name:line on a bad line (its number counted only then)."""
    with path.open("rb") as lines:
        if start:
            lines.seek(start - 1)
            lines.readline()  # the line under way at start belongs to the range before
        at = lines.tell()
        while at < end:
            line = lines.readline()
            if not line:
                break
            if line.strip():
                yield line.rstrip(b"\r\n"), _resource(line, name, partial(_line_number, path, at))
            at += len(line)


def _line_number(path: Path, offset: int) -> int:
    with path.open("rb") as lines:
        return lines.read(offset).count(b"\n") + 1


def partition_range(path: Path, name: str, start: int, end: int, work: Path, buckets: int, tag: int) -> Census:
    """Split the lines of a byte range of one file into `buckets` files under work, each line as
    `<patient id>\\t<resource>`, all of a patient's lines in the same bucket number (bucket-<n>-<tag>.tsv: one set
    per range, so ranges can be split in parallel). The census of the range. NdjsonError on a bad line."""
    census = Census()
    outs: dict[int, IO[bytes]] = {}
    try:
        for line, resource in records_between(path, name, start, end):
            kind = resource["resourceType"]
            census.resources[kind] += 1
            if kind == "Medication":
                census.medications[f"Medication/{resource.get('id')}"] = resource
                continue
            patient = patient_of(resource)
            if patient is None:
                census.without_patient[kind] += 1
                continue
            census.patients += kind == "Patient"
            bucket = zlib.crc32(patient.encode()) % buckets
            if bucket not in outs:
                outs[bucket] = (work / f"bucket-{bucket:05d}-{tag:05d}.tsv").open("wb")
            outs[bucket].write(patient.encode() + _TAB + line + b"\n")
    finally:
        for out in outs.values():
            out.close()
    return census


def resources_of(blobs: Iterable[bytes]) -> list[dict[str, Any]]:
    """The resources of newline-joined NDJSON lines."""
    return [orjson.loads(line) for blob in blobs for line in blob.split(b"\n") if line]


def groups(lines: Iterable[bytes]) -> dict[str, list[dict[str, Any]]]:
    """Bucket lines grouped by patient (in the order read)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        patient, _, resource = line.rstrip(b"\n").partition(_TAB)
        grouped.setdefault(patient.decode(), []).append(orjson.loads(resource))
    return grouped


def evaluate_group(patient: str, resources: list[dict[str, Any]], medications: Mapping[str, Mapping[str, Any]],
                   job: Job) -> list[PatientRow]:
    """The rows of one patient's resources; an error row when they hold no (or several) Patient resources."""
    try:
        chart = chart_of_resources(patient, resources, medications)
    except InputError as exc:
        key = patient_key(patient, job.show_ids)
        return [PatientRow(patient=key, hook=h or Hook.PATIENT_VIEW, error=f"Patient/{key}: {exc}",
                           source=f"Patient/{key}") for h in job.hooks]
    return evaluate_chart(chart, job)


def evaluate_bucket(parts: Iterable[Path], medications: Mapping[str, Mapping[str, Any]],
                    job: Job) -> list[PatientRow]:
    """The rows of every patient in one bucket (its part files, in range order): a worker's task."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        with part.open("rb") as lines:
            for patient, resources in groups(lines).items():
                grouped.setdefault(patient, []).extend(resources)
    return [row for patient, resources in grouped.items()
            for row in evaluate_group(patient, resources, medications, job)]


def export_bundles(bundles: Iterable[Path], out: Path, copies: int = 1, types: Iterable[str] | None = None) -> int:
    """Write the Bundles' resources as a Bulk export (one <Type>.ndjson per type, references `Type/id`) into out;
    with copies > 1 each Bundle is written that many times, every id replaced by a new one per copy. `types`
    limits the types written. Returns the number of patients written. InputError on a file that is no Bundle."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(types) if types is not None else None
    files: dict[str, IO[bytes]] = {}
    patients = 0
    try:
        for path in bundles:
            bundle = read_json(path)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise InputError(f"{path}: not a FHIR Bundle")
            entries = [e for e in bundle.get("entry") or ()
                       if isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("id")]
            for copy in range(copies):
                new_id = {e["resource"]["id"]: (e["resource"]["id"] if copies == 1 else
                                                str(uuid.uuid5(uuid.NAMESPACE_URL, f"{e['resource']['id']}/{copy}")))
                          for e in entries}
                local = {}
                for e in entries:
                    resource = e["resource"]
                    target = f"{resource['resourceType']}/{new_id[resource['id']]}"
                    local[f"{resource['resourceType']}/{resource['id']}"] = target
                    if isinstance(e.get("fullUrl"), str):
                        local[e["fullUrl"]] = target
                for e in entries:
                    kind = e["resource"]["resourceType"]
                    if wanted is not None and kind not in wanted:
                        continue
                    resource = rewrite_references(e["resource"], local)
                    resource["id"] = new_id[e["resource"]["id"]]
                    if kind not in files:
                        files[kind] = (out / f"{kind}.ndjson").open("wb")
                    files[kind].write(orjson.dumps(resource) + b"\n")
                    patients += kind == "Patient"
    finally:
        for handle in files.values():
            handle.close()
    return patients
