"""The 48 shared Synthea R4 patients as prefetch-mode patient-view calls: silent without a cramp finding; with one
added, valid cards whose counts per rule are what the data allow (counts printed, and written to
$SPASM_CDS_REPORT_DIR/synthea-counts.json when that is set)."""
from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.gather.facts import lab_results
from cds_service.knowledge.model import Knowledge, Service
from cds_service.pipeline import respond
from cds_service.render.cards import EXTENSION_KEY
from cds_service.settings import Settings
from tests.support.cds_schema import schema_errors
from tests.support.fhir_server import http_request
from tests.support.synthea import (
    BUNDLE_DIR,
    SyntheaChart,
    all_prefetched,
    codings,
    cramp_condition,
    criterion,
    expected_missing_labs,
    facts_of,
    lab_observations,
    manifest,
    ordered_code,
    prefetch_request,
    synthea_chart,
    view_day,
)

BUNDLE_NAMES = sorted(p.name for p in BUNDLE_DIR.glob("*.json")) if BUNDLE_DIR.is_dir() else []
EXPECTED_BUNDLES = 48  # shared/synthea/README.md

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not BUNDLE_NAMES, reason=f"no Synthea bundles in {BUNDLE_DIR}")]

SERVICE_ID = "spasm-cramps-patient-view"
DIURETIC_RULE = "diuretic-low-potassium"
MAGNESIUM_RULE = "low-magnesium"
WORKUP_RULE = "missing-electrolytes"
SEVERITY_ORDER = ["critical", "warning", "info"]
MAX_CARDS_PER_PATIENT = 4  # alert burden: grouped findings keep a cramp patient to a few cards
SUMMARY_LIMIT = 140  # CDS Hooks: a card summary is a "<140-character" sentence
SETTINGS = Settings()
REPORT_FILE = "synthea-counts.json"
# "last-encounter": each patient is viewed on the day of their last Synthea encounter, so their latest labs are
# recent and the lab rules really judge values; "wall-clock": viewed today, when every Synthea lab is years old.
CLOCKS = ("last-encounter", "wall-clock")

@pytest.fixture(scope="module")
def service(knowledge: Knowledge) -> Service:
    for rule_id in (DIURETIC_RULE, MAGNESIUM_RULE, WORKUP_RULE):
        assert rule_id in knowledge.rules, f"rule {rule_id} is gone: update this test"
    return knowledge.services[SERVICE_ID]


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """Counts the tests gather; printed, and written to $SPASM_CDS_REPORT_DIR/synthea-counts.json if set."""
    gathered: dict[str, Any] = {}
    yield gathered
    where = os.environ.get("SPASM_CDS_REPORT_DIR")
    if where and gathered:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / REPORT_FILE).write_text(json.dumps(gathered, indent=2, sort_keys=True) + "\n",
                                               encoding="utf-8")


def test_shared_folder_has_the_48_bundles_of_the_manifest() -> None:
    assert len(BUNDLE_NAMES) == EXPECTED_BUNDLES
    assert sorted(manifest()) == BUNDLE_NAMES


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_synthea_patient_without_a_cramp_finding_gets_no_cards(name: str, knowledge: Knowledge, service: Service,
                                                               today: date) -> None:
    chart = synthea_chart(name)
    body = prefetch_request(chart, service, everything=True)
    subjects = {r["subject"]["reference"] for r in all_prefetched(body) if "subject" in r}

    response = respond(body, service, knowledge, SETTINGS, today)

    assert subjects <= {f"Patient/{chart.patient_id}"}
    assert "urn:uuid:" not in json.dumps(body["prefetch"])
    assert response == {"cards": []}


def test_synthea_lab_results_and_diuretic_orders_are_recognised(knowledge: Knowledge, today: date,
                                                                report: dict[str, Any]) -> None:
    """Every result coded with a lab concept's LOINC code becomes a fact (its unit converts); diuretic orders are
    recognised by code in the bundles the manifest selected for them, and nothing is in the control bundles."""
    categories = manifest()
    lab_concepts = [c.id for c in knowledge.concepts.values() if c.domain == "lab"]
    problems: list[str] = []
    units: Counter[str] = Counter()
    medication_codes: dict[str, dict[str, Any]] = {}
    concepts_by_category: dict[str, Counter[str]] = defaultdict(Counter)
    for name in BUNDLE_NAMES:
        chart = synthea_chart(name)
        every = lab_results(chart.resources.get("observations", ()), knowledge.terminology)
        for concept_id in lab_concepts:
            valued = [o for o in lab_observations(chart, knowledge, concept_id)
                      if isinstance((o.get("valueQuantity") or {}).get("value"), (int, float))]
            units.update(f"{concept_id} {o['valueQuantity'].get('code') or o['valueQuantity'].get('unit')}"
                         for o in valued)
            if len(every.get(concept_id, ())) != len(valued):
                problems.append(f"{name}: {len(valued)} valued {concept_id} result(s), "
                                f"{len(every.get(concept_id, ()))} could be compared")
        found: set[str] = set()
        for request in chart.resources.get("medication-requests", ()):
            if request["resourceType"] != "MedicationRequest":
                continue
            concept = request.get("medicationCodeableConcept") or {}
            concepts, _ = knowledge.terminology.medication(codings(concept), concept.get("text"))
            found |= concepts
            for coding in codings(concept):
                row = medication_codes.setdefault(f"{coding.get('code')} {coding.get('display')}",
                                                  {"resources": 0, "concepts": sorted(concepts)})
                row["resources"] += 1
        category = categories[name]
        concepts_by_category[category].update(found or {"(none)"})
        if category.startswith("control") and found:
            problems.append(f"{name} is a control, yet orders were read as {sorted(found)}")
        if category == "loop_plus_thiazide" and not {"loop-diuretics", "thiazide-diuretics"} <= found:
            problems.append(f"{name} has loop and thiazide orders, yet only {sorted(found)} were recognised")
    recognised = {code: row for code, row in sorted(medication_codes.items()) if row["concepts"]}
    report["recognition"] = {"lab_units": dict(sorted(units.items())), "recognised_medication_codes": recognised,
                             "unrecognised_medication_codes": len(medication_codes) - len(recognised),
                             "patients_by_category_and_concept": {k: dict(v) for k, v in
                                                                  sorted(concepts_by_category.items())}}
    print("\nSynthea recognition:", json.dumps(report["recognition"], indent=1, sort_keys=True))
    assert not problems, "\n".join(problems[:20])
    assert recognised, "no medication order of the 48 bundles was recognised"


@dataclass
class Tally:
    """What one run over all bundles found: the cards, the premises read from the data, and any problems."""

    rules: Counter[str]
    indicators: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)  # work-up orders offered, by lab concept
    problems: list[str] = field(default_factory=list)
    patients_with_cards: int = 0
    cards_per_patient: list[int] = field(default_factory=list)
    missing_data_cards: int = 0
    potassium_values: list[float] = field(default_factory=list)
    potassium_with_own_range: int = 0
    magnesium_results: int = 0
    diuretic_with_recent_potassium: int = 0

    def note_premises(self, chart: SyntheaChart, knowledge: Knowledge, day: date) -> None:
        """Read what the count assertions rest on straight from the data (and from the extracted facts)."""
        for observation in lab_observations(chart, knowledge, "potassium"):
            self.potassium_values.append(observation["valueQuantity"]["value"])
            own = observation.get("referenceRange") or observation.get("interpretation")
            self.potassium_with_own_range += bool(own)
        self.magnesium_results += len(lab_observations(chart, knowledge, "magnesium"))
        diuretics = set(criterion(knowledge, DIURETIC_RULE, "medication").concepts)
        window = criterion(knowledge, DIURETIC_RULE, "lab").within_days
        assert window is not None
        facts = facts_of(chart, knowledge, day)
        latest = facts.labs.get("potassium")
        if (any(diuretics & m.concepts for m in facts.medications) and latest is not None
                and latest.when >= day - timedelta(days=window)):
            self.diuretic_with_recent_potassium += 1

    def check_response(self, chart: SyntheaChart, knowledge: Knowledge, day: date, response: dict[str, Any]) -> None:
        """Count the cards; note every schema, summary, indicator, order or work-up problem."""
        name = chart.name
        self.problems += [f"{name}: CdsResponse: {e}" for e in schema_errors("CdsResponse", response)]
        self.patients_with_cards += bool(response["cards"])
        self.cards_per_patient.append(len(response["cards"]))
        if len(response["cards"]) > MAX_CARDS_PER_PATIENT:
            self.problems.append(f"{name}: {len(response['cards'])} cards (at most {MAX_CARDS_PER_PATIENT})")
        workup_cards = 0
        for card in response["cards"]:
            ours = card.get("extension", {}).get(EXTENSION_KEY, {})
            self.indicators[card["indicator"]] += 1
            summary = card["summary"]
            if len(summary) >= SUMMARY_LIMIT or summary.endswith("…") or "{" in summary:
                self.problems.append(f"{name}: summary too long, clipped or unfilled ({len(summary)}): {summary!r}")
            if "missingData" in ours:
                self.missing_data_cards += 1
                continue
            rules = ours["rules"]
            self.rules.update(rules)
            worst = min((knowledge.rules[r].severity for r in rules), key=SEVERITY_ORDER.index)
            if card["indicator"] != worst:
                self.problems.append(f"{name}: card of {rules} has indicator {card['indicator']}, not {worst}")
            suggested = []
            for action in (a for s in card.get("suggestions", ()) for a in s["actions"]):
                request = ServiceRequest.model_validate(action["resource"])
                if request.subject.reference != f"Patient/{chart.patient_id}":
                    self.problems.append(f"{name}: order for {request.subject.reference}")
                suggested.append(ordered_code(request))
            if len(suggested) != len(set(suggested)):
                self.problems.append(f"{name}: the same test is offered twice: {suggested}")
            if WORKUP_RULE in rules:
                workup_cards += 1
                missing = expected_missing_labs(chart, knowledge, day, WORKUP_RULE)
                self.orders.update(missing)
                # other work-up rules may add their tests to the same card; the electrolytes must all be there
                wanted = [knowledge.concepts[cid].lab_spec.order_loinc for cid in missing]
                if not set(wanted) <= set(suggested):
                    self.problems.append(f"{name}: work-up card offers {suggested}; the data leave {missing} missing")
        if workup_cards > 1:
            self.problems.append(f"{name}: {workup_cards} work-up cards")

    def as_json(self) -> dict[str, Any]:
        """The counts, for printing and for the report file."""
        return {"bundles": len(BUNDLE_NAMES), "patients_with_cards": self.patients_with_cards,
                "cards": sum(self.indicators.values()),
                "cards_per_patient": {"median": statistics.median(self.cards_per_patient or [0]),
                                      "max": max(self.cards_per_patient, default=0)},
                "findings_by_rule": dict(sorted(self.rules.items())),
                "cards_by_indicator": dict(sorted(self.indicators.items())),
                "missing_data_cards": self.missing_data_cards,
                "work_up_orders_by_lab": dict(sorted(self.orders.items())),
                "premises": {"potassium_results": len(self.potassium_values),
                             "potassium_min": min(self.potassium_values, default=None),
                             "potassium_max": max(self.potassium_values, default=None),
                             "potassium_results_with_own_range_or_flag": self.potassium_with_own_range,
                             "magnesium_results": self.magnesium_results,
                             "patients_on_diuretic_with_potassium_in_rule_window": self.diuretic_with_recent_potassium}}


@pytest.mark.parametrize("clock", CLOCKS)
def test_synthea_patients_with_a_cramp_get_valid_cards_the_data_allow(clock: str, knowledge: Knowledge,
                                                                      service: Service, today: date,
                                                                      report: dict[str, Any]) -> None:
    tally = Tally(rules=Counter({rule.id: 0 for rule in service.rules}))
    for name in BUNDLE_NAMES:
        chart = synthea_chart(name)
        day = view_day(chart, clock, today)
        cramp = cramp_condition(knowledge, chart.patient_id, day)
        response = respond(prefetch_request(chart, service, extra=(cramp,)), service, knowledge, SETTINGS, day)
        broad = respond(prefetch_request(chart, service, everything=True, extra=(cramp,)), service, knowledge,
                        SETTINGS, day)
        tally.note_premises(chart, knowledge, day)
        tally.check_response(chart, knowledge, day, response)
        if broad != response:
            tally.problems.append(f"{name}: the cards change when the prefetch also holds data not asked for")
    counts = {"clock": clock, "viewed_on": today.isoformat() if clock == "wall-clock" else "last encounter day",
              **tally.as_json()}
    report[clock] = counts
    print(f"\nSynthea counts ({clock}):", json.dumps(counts, indent=1))

    assert not tally.problems, "\n".join(tally.problems[:20])
    n = len(BUNDLE_NAMES)
    # Synthea draws potassium from the normal range, with no range or flag of its own: never low.
    assert tally.potassium_values
    low = knowledge.concepts["potassium"].lab_spec.fallback_low
    assert low is not None and min(tally.potassium_values) >= low
    assert tally.potassium_with_own_range == 0
    assert tally.rules[DIURETIC_RULE] == 0
    if clock == "last-encounter":
        assert tally.diuretic_with_recent_potassium > 0, "the diuretic rule never had a recent potassium to judge"
    # No Synthea patient has a magnesium result: never low, and always missing from the work-up.
    assert tally.magnesium_results == 0
    assert tally.rules[MAGNESIUM_RULE] == 0
    # The work-up needs a reason (a diuretic or PPI, a condition, a low result), magnesium always among the tests;
    # a stale potassium alone is no reason (issue 17), so it never fires for every patient.
    assert tally.orders["magnesium"] == tally.rules[WORKUP_RULE] > 0
    assert tally.rules[WORKUP_RULE] < n
    assert tally.missing_data_cards == 0  # every key was prefetched
    assert max(tally.cards_per_patient) <= MAX_CARDS_PER_PATIENT


def test_a_large_loop_diuretic_prefetch_goes_through_the_http_service(knowledge: Knowledge, service: Service,
                                                                      service_server: Any, today: date,
                                                                      report: dict[str, Any]) -> None:
    """The biggest all-resources prefetch of a patient with an active loop diuretic that fits the body limit is
    answered over HTTP (gunicorn) exactly as in process."""
    limit = SETTINGS.max_body_bytes
    sizes: list[tuple[int, int, str]] = []
    for name in BUNDLE_NAMES:
        chart = synthea_chart(name)
        if not any("loop-diuretics" in m.concepts for m in facts_of(chart, knowledge, today).medications):
            continue
        body = prefetch_request(chart, service, everything=True,
                                extra=(cramp_condition(knowledge, chart.patient_id, today),))
        sizes.append((sum(1 for _ in all_prefetched(body)), len(json.dumps(body).encode()), name))
    fitting = [s for s in sizes if s[1] <= limit]
    assert sizes, "no Synthea patient has an active loop diuretic"
    assert fitting, f"no loop-diuretic prefetch fits in {limit} bytes: {sorted(sizes)}"
    resources, size, name = max(fitting)
    chart = synthea_chart(name)
    body = prefetch_request(chart, service, everything=True,
                            extra=(cramp_condition(knowledge, chart.patient_id, today),))
    report["http"] = {"bundle": name, "prefetch_resources": resources, "body_bytes": size, "limit_bytes": limit}
    print("\nSynthea over HTTP:", report["http"])

    status, raw = http_request("POST", f"{service_server.url}/cds-services/{SERVICE_ID}", json.dumps(body).encode(),
                               {"Content-Type": "application/json", "Accept": "application/json"})

    assert status == 200, raw[:2000]
    response = json.loads(raw)
    assert schema_errors("CdsResponse", response) == []
    assert response == respond(body, service, knowledge, SETTINGS, today, base_url=f"{service_server.url}/")
    assert any(WORKUP_RULE in c["extension"][EXTENSION_KEY]["rules"] for c in response["cards"])
