"""Measure what STYLE.md B3 claims: validating a prefetch into fhir.resources R4B models costs far more than
reading plain dicts. Prints medians over repeated runs; nothing here is asserted in tests.

Usage: python bench/parse_cost.py [SHARED_DIR]   (default ../shared)"""
from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from cds_service.gather.facts import extract_facts
from cds_service.knowledge.loader import load_knowledge

REPO = Path(__file__).resolve().parent.parent
KINDS = {"Patient": "patient", "MedicationRequest": "medication-requests", "Condition": "conditions",
         "Observation": "observations"}


def sample(shared: Path) -> list[dict]:
    """222 resources shaped like the STYLE.md measurement: 1 Patient, 8 MedicationRequests, 13 Conditions,
    200 Observations, from the largest Synthea bundle that has that many."""
    want = {"Patient": 1, "MedicationRequest": 8, "Condition": 13, "Observation": 200}
    for path in sorted((shared / "synthea" / "bundles").glob("*.json"), key=lambda p: -p.stat().st_size):
        resources = [e["resource"] for e in json.loads(path.read_text())["entry"]]
        picked = []
        for kind, n in want.items():
            of_kind = [r for r in resources if r["resourceType"] == kind][:n]
            if len(of_kind) < n:
                break
            picked += of_kind
        else:
            return picked
    raise SystemExit("no bundle has enough resources")


def timed(fn, runs: int = 30) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared"
    resources = sample(shared)
    knowledge = load_knowledge(REPO)
    models = {kind: getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind) for kind in KINDS}
    grouped: dict[str, list[dict]] = {}
    for r in resources:
        grouped.setdefault(KINDS[r["resourceType"]], []).append(r)
    text = json.dumps(resources)

    pydantic_ms = timed(lambda: [models[r["resourceType"]].model_validate(r) for r in resources])
    json_ms = timed(lambda: json.loads(text))
    facts_ms = timed(lambda: extract_facts(grouped, (), knowledge.terminology, date.today()))
    print(f"resources: {len(resources)}")
    print(f"R4B model validation: {pydantic_ms:.1f} ms (median of 30)")
    print(f"json.loads of the same data: {json_ms:.1f} ms")
    print(f"extract_facts on dicts (codes, units, dates): {facts_ms:.1f} ms")
    print(f"ratio model validation / (json + facts): {pydantic_ms / (json_ms + facts_ms):.1f}x")


if __name__ == "__main__":
    main()
