"""Prefetch: fill {{...}} tokens in query templates, and classify what the EHR sent under each key."""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from ..knowledge.templates import ANY_TOKEN, NAME, TODAY, USER_TOKENS, shifted


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
        when = TODAY.fullmatch(inner)
        if when is not None:
            day = today or date.today()
            return (shifted(day, when.group(1), int(when.group(2)), when.group(3)) if when.group(1) else day) \
                .isoformat()
        named = NAME.fullmatch(inner)
        name = named.group(1) if named else ""
        value: Any = None
        if name.startswith("context."):
            value = call.context.get(name[len("context."):])
        elif name in USER_TOKENS:
            kind, _, ident = str(call.user_id).partition("/")
            value = ident if kind == USER_TOKENS[name] else None
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            missing = True
            return ""
        return str(value)

    rendered = ANY_TOKEN.sub(fill, template)
    return None if missing else rendered
