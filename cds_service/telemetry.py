"""Logging with a request id on every line (no PHI at INFO: callers log ids of rules and keys, never values),
and Prometheus metrics (multiprocess mode under gunicorn when PROMETHEUS_MULTIPROC_DIR is set before start)."""
from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                 "level": record.levelname, "logger": record.name,
                 "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    """Send the service's logs to stderr as JSON lines, once per process."""
    root = logging.getLogger("cds_service")
    if any(getattr(h, "_spasm_cds", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._spasm_cds = True  # type: ignore[attr-defined]  # our mark on the handler, so it is added once
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("spasm_cds_requests_total", "Requests answered, by endpoint and HTTP status",
                   ["endpoint", "status"])
LATENCY = Histogram("spasm_cds_request_seconds", "Time to answer a request, by endpoint", ["endpoint"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
CARDS = Counter("spasm_cds_cards_total", "Findings shown on cards, by rule and indicator", ["rule", "indicator"])
SUPPRESSED = Counter("spasm_cds_cards_suppressed_total", "Cards not shown, by rule and reason", ["rule", "reason"])
FEEDBACK = Counter("spasm_cds_feedback_total", "Feedback outcomes received, by outcome", ["outcome"])
SILENCED = Counter("spasm_cds_rules_silenced_total", "Rules that could not decide because data was unknown",
                   ["rule"])
FHIR_LATENCY = Histogram("spasm_cds_fhir_request_seconds", "Time of one call to the EHR's FHIR server",
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
FHIR_ERRORS = Counter("spasm_cds_fhir_errors_total", "Failed calls to the EHR's FHIR server, by reason", ["reason"])
DATA_INCOMPLETE = Counter("spasm_cds_data_incomplete_total",
                          "Hook calls where only part of a kind of data arrived (a next page not followed, paging "
                          "stopped at its cap): what arrived is used, the rest is unknown", ["kind"])
FHIR_OVER_CAP = Counter("spasm_cds_fhir_answers_over_cap_total",
                        "FHIR answers given up because they passed a byte cap (their data is unknown), by cap: "
                        "`answer` (SPASM_CDS_FHIR_MAX_ANSWER_BYTES) or `call` (SPASM_CDS_FHIR_MAX_CALL_BYTES)",
                        ["cap"])
FHIR_CALLS_BUSY = Counter("spasm_cds_fhir_calls_busy_total",
                          "Hook calls that fetched nothing because SPASM_CDS_FHIR_MAX_CALLS calls of their worker "
                          "were already fetching")
UNRECOGNISED_DRUGS = Counter("spasm_cds_medication_codes_unrecognised_total",
                             "Medications whose RxNorm codes the roll-up table does not know (by name or not at all)")
NAME_FALLBACKS = Counter("spasm_cds_medication_name_fallback_total",
                         "Medications recognised by ingredient or brand name only, not by code")
UNREAD_LAB_UNITS = Counter("spasm_cds_lab_units_unread_total",
                           "Newest lab results holding a number in a unit that is missing or cannot be converted, "
                           "by lab concept (never by unit or value)", ["lab"])
JWT_FAILURES = Counter("spasm_cds_jwt_failures_total", "Refused JWTs, by reason (a closed set of codes)", ["reason"])
JTI_IN_PROCESS = Counter("spasm_cds_jti_in_process_total",
                         "JWT ids handled by a worker's in-process replay memory while the database could not take "
                         "them, by event: kept (accepted, remembered in the worker), written_through (stored once "
                         "the database was back), conflict (already stored then: also accepted elsewhere)", ["event"])
CARDS_UNRECORDED = Counter("spasm_cds_cards_unrecorded_total",
                           "Cards returned but not recorded in the card memory, by reason: busy (the write lock was "
                           "held past SPASM_CDS_HOOK_LOCK_WAIT_S), unavailable (the database failed)", ["reason"])


def mark_worker_dead(pid: int) -> None:
    """gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def metrics_text() -> bytes:
    """The Prometheus exposition of every worker (multiprocess) or of this process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def record_cards(cards: Iterable[tuple[tuple[str, ...], str]], silenced: Iterable[str]) -> None:
    """Count each finding a card shows (cards as their rules and indicator), under its rule and the card's
    indicator; and the silenced rules."""
    for rules, indicator in cards:
        for rule in rules:
            CARDS.labels(rule=rule, indicator=indicator).inc()
    for rule in silenced:
        SILENCED.labels(rule=rule).inc()


def record_facts(facts) -> None:
    """Count what a chart's facts did not recognise: medications not known by code, and labs whose newest result
    could not be read (by lab concept id only; no code, unit, name or value is recorded)."""
    identity = facts.identity
    if identity.unrecognised_codes:
        UNRECOGNISED_DRUGS.inc(len(identity.unrecognised_codes))
    if identity.by_name:
        NAME_FALLBACKS.inc(identity.by_name)
    record_unread_labs(facts.unread_labs)


def record_unread_labs(concept_ids: Iterable[str]) -> None:
    """Count the labs whose newest result could not be read, by lab concept id only (no unit, no value: PHI-free)."""
    for concept_id in concept_ids:
        UNREAD_LAB_UNITS.labels(lab=concept_id).inc()
