"""STEP 5b, around render (step 6): what this patient should see now. select_findings, before render, drops the
findings turned off by the site or the request, snoozed, or called not relevant (data unchanged); Screening.settle,
after render, reads the typed Cards (render/card.py): cards already shown to this clinician within their repeat
window, or at order-select (unless critical and not acted on), are held back, the rest is capped at the maximum
number of cards and recorded as issued. Without a card memory, or with its
database down, only the configuration applies (logged)."""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .configuration import Choices, choose, site_defaults
from .errors import MemoryUnavailable
from .evaluate.engine import Evaluation, Finding, finding_key
from .hook_request import HookCall
from .knowledge.model import Knowledge, Service
from .memory import IssuedCard, Recall
from .render.card import Card
from .settings import Settings
from .telemetry import CARDS_UNRECORDED, SUPPRESSED

if TYPE_CHECKING:  # SQL libraries load with create_app, not with the tools that only evaluate
    from .state.suppression import CardMemory

log = logging.getLogger(__name__)
_DAY_S = 86_400


@dataclass
class Screening:
    """One call's screen: the findings left to render, and what settle() needs to finish the cards."""

    evaluation: Evaluation
    call: HookCall
    service: Service
    knowledge: Knowledge
    choices: Choices
    fingerprints: dict[str, str]  # finding key (rule id, @draft id for an order) -> fingerprint of the finding
    memory: CardMemory | None = None
    recall: Recall | None = None
    deduplicate: bool = True
    patient_key: str = ""
    context_key: str = ""
    user_key: str = ""  # patient and user: repeats and acknowledgements are the clinician's
    select_since: int = 0  # order-sign: cards order-select issued since then are not repeated

    def settle(self, cards: list[Card]) -> list[Card]:
        """Hold back repeats, cap the number of cards, and record the cards returned (database faults logged)."""
        held: Counter[str] = Counter()
        shown, notices = [], []
        for card in cards:
            if not card.rules:
                notices.append(card)
                continue
            reason = self._repeat(card)
            if reason:
                _count_suppressed(card.rules, reason, held)
            else:
                shown.append(card)
        limit = self.choices.max_cards
        if limit is not None and len(shown) > limit:
            for card in shown[limit:]:
                _count_suppressed(card.rules, "max-cards", held)
            shown = shown[:limit]
        if held:
            log.info("service %s: held back %s", self.service.id, ", ".join(f"{n} by {r}" for r, n in held.items()))
        final = shown + notices
        self._record(final)
        return final

    def _repeat(self, card: Card) -> str | None:
        """Why this card must not be shown again now, or None."""
        if self.memory is None or self.recall is None or not self.deduplicate:
            return None  # recall is read only with a memory
        key, fingerprint = card.key, self._card_fingerprint(card)
        now = self.memory.now()
        if self.service.deduplicate:
            days = self.knowledge.repeat_windows.days(card.indicator, card.group, card.rules)
            since = now - days * _DAY_S
            if days and self.recall.acknowledged_since(key, fingerprint, since):
                return "acknowledged"
            if days and card.indicator == "info" and self.recall.last_shown.get((key, fingerprint), -1) >= since:
                return "repeat-window"
        # a critical card nobody acted on at selection is shown again at signing
        if (self.service.skip_shown_at and (key, fingerprint) in self.recall.shown_at_select
                and (card.indicator != "critical"
                     or self.recall.acknowledged_since(key, fingerprint, self.select_since))):
            return "shown-at-order-select"
        return None

    def _card_fingerprint(self, card: Card) -> str:
        if not card.rules:
            return _digest(list(card.missing_data or ()))
        if len(card.rules) == 1 and card.group is None:
            return self._fingerprint(card, card.rules[0])
        return _digest(sorted((r, self._fingerprint(card, r)) for r in card.rules))

    def _fingerprint(self, card: Card, rule: str) -> str:
        """The fingerprint of the card's finding of this rule (about the card's order, if it is about one)."""
        return self.fingerprints[finding_key(rule, card.order)]

    def _record(self, cards: list[Card]) -> None:
        if self.memory is None or self.recall is None:
            return  # no memory, or it could not be read: recording now would only fail or mislead
        issued = [IssuedCard(c.uuid, c.key, self._card_fingerprint(c), {r: self._fingerprint(c, r) for r in c.rules},
                             c.indicator, dict(c.rule_versions), dict(c.offered)) for c in cards]
        try:
            self.memory.record(issued, self.service.id, self.call.hook, self.call.hook_instance,
                               self.call.patient_id, self.patient_key, self.context_key, self.user_key)
        except MemoryUnavailable as exc:
            CARDS_UNRECORDED.labels(reason="busy" if exc.busy else "unavailable").inc(len(issued))
            log.warning("service %s: card memory unavailable (%s); %d card(s) returned but not recorded, so "
                        "feedback on them will be flagged unknown", self.service.id, exc, len(issued))


def select_findings(evaluation: Evaluation, call: HookCall, service: Service, knowledge: Knowledge,
                    settings: Settings, memory: CardMemory | None = None) -> Screening:
    """Drop the findings this call must not show; raises InvalidRequest on a badly typed configuration choice."""
    choices = choose(service, site_defaults(knowledge, settings.configuration_defaults), call.extension)
    drafts = _draft_digests(call.context)
    fingerprints = {f.key: finding_fingerprint(f, drafts) for f in evaluation.findings}
    screening = Screening(evaluation, call, service, knowledge, choices, fingerprints,
                          deduplicate=settings.deduplicate_on)
    held: Counter[str] = Counter()
    kept = []
    for finding in evaluation.findings:
        if choices.hides(finding.rule.severity, finding.rule.group):
            _count_suppressed((finding.rule.id,), "configuration", held)
        else:
            kept.append(finding)
    if memory is not None and kept:
        screening.memory = memory
        screening.recall = _recall(screening, memory)
        if screening.recall is not None:
            now = memory.now()
            remaining = []
            for finding in kept:
                if screening.recall.snoozed(finding.rule.id, now):
                    _count_suppressed((finding.rule.id,), "snooze", held)
                elif screening.recall.not_relevant(finding.rule.id, fingerprints[finding.key]):
                    _count_suppressed((finding.rule.id,), "until-data-changes", held)
                else:
                    remaining.append(finding)
            kept = remaining
    if held:
        log.info("service %s: findings not shown: %s", service.id, ", ".join(f"{n} by {r}" for r, n in held.items()))
    screening.evaluation = replace(evaluation, findings=tuple(kept))
    return screening


def _recall(screening: Screening, memory: CardMemory) -> Recall | None:
    call, service = screening.call, screening.service
    screening.patient_key = memory.key(call.patient_id)
    screening.context_key = memory.key(call.patient_id, call.user_id, str(call.context.get("encounterId") or ""))
    screening.user_key = memory.key(call.patient_id, call.user_id)
    now = memory.now()
    longest = max([*screening.knowledge.repeat_windows.by_indicator.values(),
                   *screening.knowledge.repeat_windows.by_group.values(),
                   *screening.knowledge.repeat_windows.by_rule.values(), 0])
    dedup = screening.deduplicate and service.deduplicate
    select_service, select_since = None, 0
    if screening.deduplicate and service.skip_shown_at:
        select_service, minutes = service.skip_shown_at
        select_since = now - minutes * 60
    screening.select_since = select_since
    try:
        return memory.recall(screening.patient_key, service.id, call.hook_instance,
                             now - longest * _DAY_S if dedup else None, select_service, screening.context_key,
                             select_since, screening.user_key)
    except MemoryUnavailable as exc:
        log.warning("service %s: card memory unavailable (%s); cards shown without de-duplication or suppression",
                    service.id, exc)
        return None


def finding_fingerprint(finding: Finding, drafts: Mapping[str, str]) -> str:
    """A digest of what triggered the finding: its rule, the values its card shows, and each draft order it
    speaks about (id and content). Any change in these is a change in the triggering data."""
    return _digest([finding.rule.id, sorted(finding.fields.items()),
                    sorted((d, drafts.get(d, "")) for d in finding.drafts)])


def _draft_digests(context: Mapping[str, Any]) -> dict[str, str]:
    """Draft MedicationRequest id -> digest of its content (its meta and narrative left out)."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    digests = {}
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("id"):
            digests[str(resource["id"])] = _digest({k: v for k, v in resource.items() if k not in ("meta", "text")})
    return digests


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _count_suppressed(rules: tuple[str, ...], reason: str, held: Counter[str]) -> None:
    held[reason] += 1
    for rule in rules:
        SUPPRESSED.labels(rule=rule, reason=reason).inc()
