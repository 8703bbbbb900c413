"""What the HTTP edge's modules share: the running app's state, and how many resources a prefetch holds. Its own
module, so that the blueprints need not import the package that registers them."""
from __future__ import annotations

from typing import Any

from flask import current_app

from ..app_state import AppState


def state() -> AppState:
    """The running app's settings, knowledge, FHIR call slots and clock."""
    return current_app.extensions["spasm_cds"]


def prefetch_resource_count(body: Any) -> int:
    """How many resources a hook request's prefetch holds (each Bundle entry counts)."""
    prefetch = body.get("prefetch") if isinstance(body, dict) else None
    if not isinstance(prefetch, dict):
        return 0
    count = 0
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and isinstance(value.get("entry"), list):
            count += len(value["entry"])
        elif value is not None:
            count += 1
    return count
