"""Prefetch: fill {{...}} tokens in query templates, and classify what the EHR sent under each key."""
from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

# every {{...}} in a template; what is inside decides whether it is a token this service can fill
_ANY_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"\s*([A-Za-z.]+)\s*")
# CDS Hooks prefetch date tokens: {{today()}}, {{today() - 90 days}}, {{today() + 1 year}} (as a FHIR date)
_TODAY = re.compile(r"\s*today\(\)\s*(?:([+-])\s*(\d{1,4})\s*(day|days|week|weeks|month|months|year|years))?\s*")
_USER_TOKENS = {"userPractitionerId": "Practitioner", "userPractitionerRoleId": "PractitionerRole",
                "userPatientId": "Patient", "userRelatedPersonId": "RelatedPerson"}
_CONTEXT_FIELDS = ("patientId", "userId", "encounterId")


def unknown_tokens(template: str) -> list[str]:
    """The {{...}} tokens of a template that render_template cannot fill (for the linter): anything but
    context.patientId/userId/encounterId, the user* tokens and the today() date tokens."""
    out = []
    for match in _ANY_TOKEN.finditer(template):
        inner = match.group(1)
        name = _NAME.fullmatch(inner)
        known = (name is not None and (name.group(1) in _USER_TOKENS or (name.group(1).removeprefix("context.")
                                       in _CONTEXT_FIELDS and name.group(1).startswith("context.")))) \
            or _TODAY.fullmatch(inner) is not None
        if not known:
            out.append(match.group(0))
    return out


def _shifted(today: date, sign: str, amount: int, unit: str) -> date:
    """today moved by a number of days, weeks, months or years (a month end is kept within the month)."""
    n = amount if sign == "+" else -amount
    if unit.startswith("day"):
        return today + timedelta(days=n)
    if unit.startswith("week"):
        return today + timedelta(weeks=n)
    months = n * (12 if unit.startswith("year") else 1)
    year, month = divmod(today.year * 12 + today.month - 1 + months, 12)
    return date(year, month + 1, min(today.day, calendar.monthrange(year, month + 1)[1]))


class PrefetchState(enum.Enum):
    """What the EHR sent under one prefetch key (the value reads well in a 412 message)."""

    USABLE = "usable"
    EMPTY = "null"
    OPERATION_OUTCOME = "an OperationOutcome"
    ABSENT = "absent"
    FAILED = "not fetchable"
    TIMED_OUT = "not fetched within the time budget"
    BUSY = "not fetched: other calls were fetching"


def classify(prefetch: Mapping[str, Any], key: str) -> tuple[PrefetchState, list[dict[str, Any]]]:
    """(state, resources) for one key: a resource, a searchset Bundle, null, an OperationOutcome, or absent."""
    if key not in prefetch:
        return PrefetchState.ABSENT, []
    value = prefetch[key]
    if value is None:
        return PrefetchState.EMPTY, []
    kind = value.get("resourceType")
    if kind == "OperationOutcome":
        return PrefetchState.OPERATION_OUTCOME, []
    if kind == "Bundle":
        return PrefetchState.USABLE, bundle_resources(value)
    return PrefetchState.USABLE, [value]


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries, without OperationOutcome entries (search.mode outcome)."""
    out: list[dict[str, Any]] = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") not in (None, "OperationOutcome"):
            out.append(resource)
    return out


def render_template(template: str, call, today: date | None = None) -> str | None:
    """The template with its tokens filled from the call's context (and today's date for the today() tokens), or
    None if a token has no value or is not one this service knows."""
    missing = False

    def fill(match: re.Match) -> str:
        nonlocal missing
        inner = match.group(1)
        when = _TODAY.fullmatch(inner)
        if when is not None:
            day = today or date.today()
            return (_shifted(day, when.group(1), int(when.group(2)), when.group(3)) if when.group(1) else day) \
                .isoformat()
        named = _NAME.fullmatch(inner)
        name = named.group(1) if named else ""
        value: Any = None
        if name.startswith("context."):
            value = call.context.get(name[len("context."):])
        elif name in _USER_TOKENS:
            kind, _, ident = str(call.user_id).partition("/")
            value = ident if kind == _USER_TOKENS[name] else None
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            missing = True
            return ""
        return str(value)

    rendered = _ANY_TOKEN.sub(fill, template)
    return None if missing else rendered
