"""Validate a CDS Hooks feedback body against schemas/feedback.schema.json and turn it into FeedbackItems,
each with the effect of its override reason when that reason is one the service's cards offer."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .errors import InvalidRequest
from .knowledge.loader import validator
from .knowledge.model import Knowledge, Service
from .render.cards import OVERRIDE_SYSTEM
from .state.feedback import FeedbackItem


def parse_feedback(body: Any, service: Service, knowledge: Knowledge) -> tuple[FeedbackItem, ...]:
    """The feedback items of a request, or InvalidRequest naming the first fields that are wrong (never values)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    errors = sorted(validator("feedback").iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise InvalidRequest("; ".join(_describe(e) for e in errors[:5]))
    offered = {code for code, _display in service.offered_reasons}
    items = []
    for i, entry in enumerate(body["feedback"]):
        reason = (entry.get("overrideReason") or {}).get("reason") or {}
        code = reason.get("code")
        ours = reason.get("system") == OVERRIDE_SYSTEM and code in offered
        items.append(FeedbackItem(
            card=entry["card"], outcome=entry["outcome"],
            outcome_at_ms=_epoch_ms(entry["outcomeTimestamp"], f"feedback/{i}/outcomeTimestamp"),
            accepted_suggestions=tuple(s["id"] for s in entry.get("acceptedSuggestions", ())),
            reason_system=reason.get("system"), reason_code=code,
            user_comment=(entry.get("overrideReason") or {}).get("userComment"),
            effect=knowledge.override_effects.get(code) if ours else None))
    return tuple(items)


def _epoch_ms(text: str, where: str) -> int:
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{where}: not a valid date-time") from None
    return int(moment.astimezone(timezone.utc).timestamp() * 1000)


def _describe(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "required":
        return f"{where}: missing {error.message.split(' ')[0]}"
    if error.validator == "not":
        return f"{where}: acceptedSuggestions go with accepted, overrideReason with overridden"
    if error.validator in ("pattern", "const", "enum", "type", "minLength", "maxLength", "minItems", "maxItems"):
        return f"{where}: not a valid value ({error.validator})"
    return f"{where}: {error.validator} check failed"
