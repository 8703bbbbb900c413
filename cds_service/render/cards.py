"""Finding + card template -> a CDS Hooks card: uuid, indicator, summary, detail, source, suggestions,
overrideReasons, links. Text comes from cards/ only; placeholders are {alias.field}."""
from __future__ import annotations

import uuid
from typing import Any

from ..evaluate.engine import Evaluation, Finding
from ..knowledge.lint import PLACEHOLDER
from ..knowledge.model import Knowledge
from .suggestions import order_lab_suggestion

CARD_NAMESPACE = uuid.UUID("6f1d3c2e-8a7b-5d4c-9e0f-123456789abc")
RULE_TOPIC_SYSTEM = "urn:spasm-cds:rule"
OVERRIDE_SYSTEM = "urn:spasm-cds:override-reason"
EXTENSION_KEY = "org.spasm-cds"
_ORDER = {"critical": 0, "warning": 1, "info": 2}


def fill(template: str, fields: dict[str, str]) -> str:
    """Replace {alias.field} placeholders with the finding's values."""
    return PLACEHOLDER.sub(lambda m: fields.get(f"{m.group(1)}.{m.group(2)}", m.group(0)), template)


def render_cards(evaluation: Evaluation, knowledge: Knowledge, hook_instance: str, patient_id: str,
                 missing_data: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Cards for the findings, most urgent first; plus one notice when unknown data silenced rules."""
    cards = [_card(f, knowledge, hook_instance, patient_id) for f in evaluation.findings]
    cards.sort(key=lambda c: _ORDER[c["indicator"]])
    if evaluation.silenced and missing_data and knowledge.missing_data_card:
        cards.append(_missing_data_card(knowledge, hook_instance, missing_data, len(evaluation.silenced)))
    return cards


def _card(finding: Finding, knowledge: Knowledge, hook_instance: str, patient_id: str) -> dict[str, Any]:
    rule = finding.rule
    card_uuid = str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|{rule.id}"))
    summary = _clip(fill(rule.card.summary, finding.fields), knowledge.max_summary_chars)
    sources = [knowledge.sources[s] for s in rule.sources]
    cited = "; ".join(f"[{s.label}]({s.url})" for s in sources)
    detail = f"{fill(rule.card.detail, finding.fields)}\n\n*Sources:* {cited}"
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": summary,
        "indicator": rule.severity,
        "detail": detail,
        "source": {"label": f"spasm-cds: {sources[0].label}", "url": sources[0].url,
                   "topic": {"system": RULE_TOPIC_SYSTEM, "code": rule.id, "display": rule.title}},
        "overrideReasons": [{"system": OVERRIDE_SYSTEM, "code": code, "display": display}
                            for code, display in knowledge.override_reasons],
        "extension": {EXTENSION_KEY: {"rule": rule.id, "evidence": rule.evidence}},
    }
    if rule.card.suggest_missing_labs and finding.missing_labs:
        loinc_uri = knowledge.systems["loinc"][0]
        reason = rule.title
        card["suggestions"] = [order_lab_suggestion(knowledge.concepts[cid], patient_id, loinc_uri, card_uuid, reason)
                               for cid in finding.missing_labs]
        card["selectionBehavior"] = "any"
    if rule.card.links:
        card["links"] = [{"label": label, "url": url, "type": "absolute"} for label, url in rule.card.links]
    return card


def _missing_data_card(knowledge: Knowledge, hook_instance: str, kinds: tuple[str, ...],
                       skipped: int) -> dict[str, Any]:
    template = knowledge.missing_data_card
    labels = ", ".join(template["labels"].get(k, k) for k in kinds)
    fields = {"missing.data": labels, "missing.count": str(skipped)}
    return {
        "uuid": str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|missing-data")),
        "summary": _clip(fill(template["summary"], fields), knowledge.max_summary_chars),
        "indicator": "info",
        "detail": fill(template["detail"], fields),
        "source": {"label": "spasm-cds"},
        "extension": {EXTENSION_KEY: {"missingData": list(kinds)}},
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
