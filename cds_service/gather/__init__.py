"""STEP 4: get the chart data a service needs, from prefetch or from the EHR's FHIR server.

gather_resources returns the resources per data kind, which kinds are unknown (could not be had), and the Medications
that draft orders name by reference (found in the request, or read from the server alongside the searches)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ..cpu_gate import OPEN, CpuGate
from ..errors import DataUnavailable, FhirError
from ..hook_request import HookCall
from ..knowledge.model import DataQuery, Service
from ..settings import Settings
from ..telemetry import DATA_INCOMPLETE, FHIR_CALLS_BUSY, FHIR_ERRORS
from ..vocabulary import MEDICATION_DATA, DataKind
from .draft_medications import draft_references, found_in_request, readable
from .fhir_client import FhirClient
from .prefetch import PrefetchState, classify, render_template

log = logging.getLogger(__name__)
_MAX_REFERENCE_READS = 25


@dataclass(frozen=True)
class Gathered:
    """Resources (plain dicts) by data kind; a kind in `unknown` could not be had and is not empty-by-fact."""

    resources: Mapping[str, list[dict[str, Any]]]
    unknown: frozenset[str]
    fetched: int  # FHIR queries made by the service itself
    # the Medications that draft orders name by reference, by reference as written; a reference missing here
    # could not be resolved (not in the request, no server, not found, not allowed, or past the time budget)
    draft_medications: Mapping[str, dict[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    # kinds of which only part arrived (a page with a `next` link that could not be followed, paging stopped at its
    # cap): what arrived is kept, and the kind is also in `unknown`, so absence proves nothing
    incomplete: frozenset[str] = frozenset()


def gather_resources(call: HookCall, service: Service, settings: Settings,
                     fhir_calls: threading.Semaphore | None = None, gate: CpuGate = OPEN,
                     today: date | None = None) -> Gathered:
    """Decide per prefetch key (use / null / OperationOutcome / absent), fetch what is missing in parallel.

    The fetches run on threads of this call's own, and every FHIR connection is cut when the time budget is
    spent, so a stalled server holds nothing past it. `fhir_calls` (one per worker) bounds how many calls fetch at
    once: a call that waits a quarter of its budget for a slot in vain fetches nothing. The call lets go of the
    worker's CPU `gate` while it waits. Raises DataUnavailable
    (412) when a required kind can be neither prefetched nor fetched."""
    deadline = time.monotonic() + settings.deadline_s
    client = _client_for(call, settings, deadline)
    resources: dict[str, list[dict[str, Any]]] = {}
    unknown: set[str] = set()
    incomplete: set[str] = set()
    continued: set[str] = set()  # prefetch keys whose next page is fetched: page 1 stands if that fails
    to_fetch: list[tuple[DataQuery, str]] = []
    for query in service.queries:
        state, found = classify(call.prefetch, query.key)
        if state is PrefetchState.USABLE:
            resources[query.kind] = found
            next_url = _next_link(call.prefetch[query.key])
            if next_url and client:
                to_fetch.append((query, next_url))  # the EHR paginated: follow its next link
                continued.add(query.key)
            elif next_url:
                _cut_short(query, "the EHR sent one page and no usable fhirServer to fetch the rest", incomplete,
                           unknown)
            continue
        if state is PrefetchState.EMPTY:
            resources[query.kind] = []
            continue
        url = render_template(query.template, call, today)
        if client is None or url is None:
            _unavailable(query, service, state, unknown)
            continue
        to_fetch.append((query, url))
    references = draft_references(call.context)
    draft_medications = found_in_request(references, call.context, (r for rs in resources.values() for r in rs))
    to_read = [ref for ref in references if ref not in draft_medications and readable(ref)] if client else []
    # the EHR may ignore _include: Medications that prefetched orders and statements reference are read too
    medications_wanted = client is not None and bool(_unresolved_medications(resources))
    work = bool(to_fetch or to_read or medications_wanted)
    fetched = 0

    def lost(query: DataQuery, state: PrefetchState, why: str) -> None:
        """A fetch that came to nothing: the next page of a prefetched kind leaves page 1 standing (incomplete);
        otherwise the kind is unavailable (412 if required)."""
        if query.key in continued:
            _cut_short(query, f"its next page {why}", incomplete, unknown)
        else:
            resources.pop(query.kind, None)
            _unavailable(query, service, state, unknown)

    # while it waits for a slot and for FHIR, other calls of this worker compute (cpu_gate.py)
    with gate.released() if work else nullcontext():
        # past the cap, a call waits for a slot for a quarter of its budget (ordinary load queues briefly; a slow
        # FHIR server holding every slot costs the others at most that wait), then treats its FHIR data as unknown
        holding = work and fhir_calls is not None and fhir_calls.acquire(timeout=max(0.0, settings.deadline_s / 4))
        if work and fhir_calls is not None and not holding:
            log.warning("%d other calls of this worker were fetching from FHIR (SPASM_CDS_FHIR_MAX_CALLS) for a "
                        "quarter of the budget; this call's FHIR data is treated as unknown", settings.fhir_max_calls)
            FHIR_CALLS_BUSY.inc()
            for query, _ in to_fetch:
                lost(query, PrefetchState.BUSY, "was not fetched: other calls were fetching")
            to_fetch, to_read, work = [], [], False
        if work and client is not None:  # nothing to do without a client
            pool = ThreadPoolExecutor(max_workers=settings.fhir_max_parallel, thread_name_prefix="fhir")
            try:
                futures = [(q, pool.submit(client.search_pages, url)) for q, url in to_fetch]
                # the drafts' Medications are read alongside the searches: the references are known from the start
                reads = [(ref, pool.submit(client.read, ref)) for ref in to_read[:_MAX_REFERENCE_READS]]
                pending: list[Future[Any]] = [f for _, f in futures]
                pending += [f for _, f in reads]
                wait(pending, timeout=max(0.0, deadline - time.monotonic()))
                for query, future in futures:
                    if not future.done():
                        future.cancel()
                        log.warning("FHIR fetch for prefetch key %s passed the time budget; treated as unknown",
                                    query.key)
                        FHIR_ERRORS.labels(reason="deadline").inc()
                        lost(query, PrefetchState.TIMED_OUT, "passed the time budget")
                        continue
                    try:
                        result, complete = future.result()
                        fetched += 1
                    except FhirError as exc:
                        log.warning("FHIR fetch failed for prefetch key %s: %s", query.key, exc)
                        lost(query, PrefetchState.FAILED, "could not be fetched")
                        continue
                    resources.setdefault(query.kind, []).extend(result)
                    if not complete:
                        _cut_short(query, "paging stopped with pages left", incomplete, unknown)
                drafts_read = _medications_read(reads, "a draft order's Medication")
                draft_medications.update(drafts_read)
                fetched += len(drafts_read)
                fetched += _resolve_medication_references(resources, client, pool, deadline)
            finally:
                # fetches still running are cut (their sockets shut down), so the threads end now, not when the
                # server lets go
                client.close()
                pool.shutdown(wait=False, cancel_futures=True)
                if holding and fhir_calls is not None:
                    fhir_calls.release()
        elif client is not None:
            client.close()
    for kind, refs in _unresolved_medications(resources).items():
        if kind not in unknown:  # a drug that cannot be identified may be any drug: absence proves nothing
            query = next(q for q in service.queries if q.kind == kind)
            _cut_short(query, f"{len(refs)} referenced Medication(s) could not be read", incomplete, unknown)
    return Gathered(resources=resources, unknown=frozenset(unknown), fetched=fetched,
                    draft_medications=MappingProxyType(draft_medications), incomplete=frozenset(incomplete))


def _client_for(call: HookCall, settings: Settings, deadline: float) -> FhirClient | None:
    """A client for the call's fhirServer, or None if it sent none or it is off the allow-list (never contacted)."""
    if not call.fhir_server:
        return None
    try:
        return FhirClient(call.fhir_server, call.access_token, settings, deadline=deadline)
    except FhirError:
        # the host alone: a URL's user-info part could hold credentials
        log.warning("fhirServer host %s is not on the allow-list (SPASM_CDS_FHIR_ALLOWED_URLS); answering from "
                    "prefetch alone", (urlsplit(call.fhir_server).hostname or "?")[:100])
        return None


def _unavailable(query: DataQuery, service: Service, state: PrefetchState, unknown: set[str]) -> None:
    if query.kind in service.required_data:
        how = ("fetching it from fhirServer failed" if state is PrefetchState.FAILED
               else "fetching it from fhirServer did not finish within the time budget"
               if state is PrefetchState.TIMED_OUT
               else "the service was busy fetching for other calls" if state is PrefetchState.BUSY
               else f"it was {state.value} and there is no usable fhirServer to fetch it from")
        raise DataUnavailable(f"prefetch key {query.key!r} is required: {how}")
    unknown.add(query.kind)


def _cut_short(query: DataQuery, why: str, incomplete: set[str], unknown: set[str]) -> None:
    """Only part of a kind arrived: keep it (a result or drug found there is real), but absence proves nothing."""
    log.warning("prefetch key %s is incomplete (%s); what arrived is used, the rest is unknown", query.key, why)
    DATA_INCOMPLETE.labels(kind=query.kind).inc()
    incomplete.add(query.kind)
    unknown.add(query.kind)


def _next_link(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle" and isinstance(value.get("link"), list):
        for link in value["link"]:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                return link["url"]
    return None


def _resolve_medication_references(resources: dict[str, list[dict]], client: FhirClient | None,
                                   pool: ThreadPoolExecutor, deadline: float) -> int:
    """Read referenced Medications that neither _include nor contained supplied; they are added as resources."""
    if client is None:
        return 0
    wanted = {ref for refs in _unresolved_medications(resources).values() for ref in refs
              if ref.startswith("Medication/")}
    if not wanted:
        return 0
    refs = sorted(wanted)[:_MAX_REFERENCE_READS]
    futures = [(ref, pool.submit(client.read, ref)) for ref in refs]
    wait([f for _, f in futures], timeout=max(0.0, deadline - time.monotonic()))
    read = _medications_read(futures, "a referenced Medication")
    resources.setdefault(DataKind.MEDICATION_REQUESTS, []).extend(read.values())
    return len(read)


def _unresolved_medications(resources: Mapping[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Per medication kind, the medicationReference references that no Medication in the resources (nor a
    contained one) answers: Medication/id references can be read from the server; others cannot be resolved."""
    have = {f"Medication/{r.get('id')}" for rs in resources.values() for r in rs
            if isinstance(r, dict) and r.get("resourceType") == "Medication"}
    out: dict[str, set[str]] = {}
    for kind in MEDICATION_DATA:
        for r in resources.get(kind, ()):
            medication = r.get("medicationReference") if isinstance(r, dict) else None
            ref = medication.get("reference") if isinstance(medication, dict) else None
            if not isinstance(ref, str) or r.get("resourceType") == "Medication" \
                    or isinstance(r.get("medicationCodeableConcept"), dict):
                continue
            if ref.startswith("#"):
                found = r.get("contained")
                contained: list[Any] = found if isinstance(found, list) else []
                if any(isinstance(c, dict) and c.get("resourceType") == "Medication" and c.get("id") == ref[1:]
                       for c in contained):
                    continue
            elif ref in have:
                continue
            out.setdefault(kind, set()).add(ref)
    return out


def _medications_read(futures: list[tuple[str, Future]], what: str) -> dict[str, dict[str, Any]]:
    """Reference -> Medication of each read that finished in time with a Medication; the others are logged."""
    read: dict[str, dict[str, Any]] = {}
    for ref, future in futures:
        if not future.done():
            future.cancel()
            log.warning("%s was not read within the time budget", what)
            continue
        try:
            resource = future.result()
        except FhirError as exc:
            log.warning("could not read %s: %s", what, exc)
            continue
        if resource.get("resourceType") != "Medication":
            log.warning("reading %s returned a %s", what, str(resource.get("resourceType"))[:40])
            continue
        read[ref] = resource
    return read
