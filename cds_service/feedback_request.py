"""Validate a CDS Hooks feedback body against schemas/feedback.schema.json and turn it into FeedbackItems,
each with the effect of its override reason when that reason is one the service's cards offer."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidRequest
from .knowledge.model import Knowledge, Service
from .render.cards import OVERRIDE_SYSTEM
from .schemas import validator
from .state.feedback import FeedbackItem

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class ParsedFeedback:
    """The entries that can be stored, and what was wrong with each of the others (by index, never values)."""

    items: tuple[FeedbackItem, ...]
    rejected: tuple[str, ...] = ()


def parse_feedback(body: Any, service: Service, knowledge: Knowledge) -> ParsedFeedback:
    """The feedback items of a request. A body that is not a feedback request at all (not an object, no feedback
    array, too many entries) raises InvalidRequest naming the first fields that are wrong (never values); so does
    one whose every entry is wrong. Otherwise a wrong entry is left out and described, and the others are kept:
    one malformed outcome does not throw away a clinician's other outcomes."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        errors = sorted(validator("feedback").iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    except RecursionError:
        raise InvalidRequest("the body is nested too deeply to check") from None
    by_entry: dict[int, list[str]] = {}
    for error in errors:
        path = list(error.absolute_path)
        if len(path) >= 2 and path[0] == "feedback" and isinstance(path[1], int):
            by_entry.setdefault(path[1], []).append(_describe(error))
        else:
            raise InvalidRequest("; ".join(_describe(e) for e in errors[:5]))
    offered = {code for code, _display in service.offered_reasons}
    items = []
    for i, entry in enumerate(body["feedback"]):
        if i in by_entry:
            continue
        try:
            outcome_at_ms = _epoch_ms(entry["outcomeTimestamp"], f"feedback/{i}/outcomeTimestamp")
        except InvalidRequest as exc:
            by_entry[i] = [str(exc)]
            continue
        reason = (entry.get("overrideReason") or {}).get("reason") or {}
        code = reason.get("code")
        ours = reason.get("system") == OVERRIDE_SYSTEM and code in offered
        items.append(FeedbackItem(
            card=entry["card"], outcome=entry["outcome"], outcome_at_ms=outcome_at_ms,
            accepted_suggestions=tuple(s["id"] for s in entry.get("acceptedSuggestions", ())),
            reason_system=reason.get("system"), reason_code=code,
            user_comment=(entry.get("overrideReason") or {}).get("userComment"),
            effect=knowledge.override_effects.get(code) if ours and isinstance(code, str) else None))
    rejected = tuple("; ".join(by_entry[i][:3]) for i in sorted(by_entry))
    if not items:
        raise InvalidRequest("; ".join(rejected[:5]))
    return ParsedFeedback(tuple(items), rejected)


def _epoch_ms(text: str, where: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time (the schema has checked its shape). Computed with timedelta,
    which spans every year 0001-9999 at any offset (astimezone overflows at the ends of datetime's range); a leap
    second (:60, which RFC 3339 allows and datetime does not) counts as the first second of the next minute."""
    text = text.upper().replace("Z", "+00:00")
    leap = text[17:19] == "60"
    try:
        moment = datetime.fromisoformat(text[:17] + "59" + text[19:] if leap else text)
    except ValueError:
        raise InvalidRequest(f"{where}: not a valid date-time") from None
    since_epoch = moment.replace(tzinfo=None) - _EPOCH - (moment.utcoffset() or timedelta(0))
    return since_epoch // _MS + (1000 if leap else 0)


def _describe(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "required":
        return f"{where}: missing {error.message.split(' ')[0]}"
    if error.validator == "not":
        return f"{where}: acceptedSuggestions go with accepted, overrideReason with overridden"
    if error.validator == "pattern" and isinstance(error.instance, str) and _CONTROL.search(error.instance):
        return f"{where}: holds a character that cannot be stored (NUL; in an identifier, any control character)"
    if error.validator in ("pattern", "const", "enum", "type", "minLength", "maxLength", "minItems", "maxItems"):
        return f"{where}: not a valid value ({error.validator})"
    return f"{where}: {error.validator} check failed"
