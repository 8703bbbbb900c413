"""One hook call from body to response: parse -> gather -> facts -> gate -> evaluate -> select -> render -> settle,
and the typed cards turned into CDS Hooks JSON once, at the end.

Shared by the HTTP view, the case runner and the command line, so all three give the same cards."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from .cpu_gate import OPEN, CpuGate
from .evaluate.engine import evaluate, passes_gate
from .gather import gather_resources
from .gather.facts import PatientFacts, condition_facts, extract_drafts, extract_facts
from .hook_request import parse_hook_request
from .knowledge.model import Knowledge, Service
from .render.cards import render_cards
from .screen import select_findings
from .settings import Settings
from .telemetry import record_cards, record_facts

if TYPE_CHECKING:  # SQL libraries load with create_app, not with the tools that only evaluate
    from .state.suppression import CardMemory

log = logging.getLogger(__name__)


def respond(body: Any, service: Service, knowledge: Knowledge, settings: Settings, today: date,
            fhir_calls: threading.Semaphore | None = None, base_url: str = "",
            memory: CardMemory | None = None, gate: CpuGate = OPEN,
            observe: Callable[[PatientFacts], None] | None = None) -> dict[str, Any]:
    """The CDS Hooks response for one request body. Raises InvalidRequest (400) or DataUnavailable (412).
    With a card memory, snoozed and repeated cards are held back and the cards returned are recorded; `observe`
    sees the patient's facts (the evaluate report counts unrecognised drugs and unread lab units with it);
    `fhir_calls` bounds the calls of this process fetching from FHIR at once, and the call steps out of the CPU
    `gate` while it fetches (gather_resources)."""
    call = parse_hook_request(body, service)
    gathered = gather_resources(call, service, settings, fhir_calls, gate, today)
    conditions = condition_facts(gathered.resources, knowledge.terminology, today)
    if not passes_gate(service.gate_conditions, conditions):
        log.info("service %s: relevance gate closed; no cards", service.id)
        return {"cards": []}
    drafts = extract_drafts(call.context, call.hook, knowledge.terminology, gathered.draft_medications)
    facts = extract_facts(gathered.resources, gathered.unknown, knowledge.terminology, today, drafts, conditions)
    record_facts(facts)
    if observe is not None:
        observe(facts)
    evaluation = evaluate(service.rules, facts, knowledge.terminology)
    screening = select_findings(evaluation, call, service, knowledge, settings, memory)
    cards = render_cards(screening.evaluation, knowledge, call.hook_instance, call.patient_id,
                         tuple(sorted(gathered.unknown)), base_url=settings.public_url or base_url,
                         override_reasons=service.override_reasons,
                         group_reasons=service.group_override_reasons, incomplete=gathered.incomplete)
    cards = screening.settle(cards)
    record_cards(((c.rules, c.indicator) for c in cards), evaluation.silenced)
    log.info("service %s: %d card(s) [%s]; %d rule(s) silenced by unknown data; %d FHIR quer(ies)",
             service.id, len(cards), ",".join(f.rule.id for f in evaluation.findings), len(evaluation.silenced),
             gathered.fetched)
    return {"cards": [card.to_json() for card in cards]}
