"""STEP 3: validate a hook call's JSON body against the CDS Hooks request schema and freeze it as a HookCall."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import InvalidRequest
from .knowledge.model import Service
from .schemas import fast_validator, validator

_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class HookCall:
    """What the EHR asked: the hook, its context, what it prefetched, and where to fetch the rest."""

    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]
    fhir_server: str | None
    access_token: str | None
    extension: Mapping[str, Any]


def parse_hook_request(body: Any, service: Service) -> HookCall:
    """A HookCall for this service, or InvalidRequest naming the first fields that are wrong (never their values)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if not fast_validator("hook-request").is_valid(body):
        # the reference validator names the fields; should it find nothing, the stricter verdict still holds
        try:
            errors = sorted(validator("hook-request").iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
        except RecursionError:
            # orjson takes nesting up to 1,024 levels; python-jsonschema recurses per level and gives up first
            raise InvalidRequest("the body is nested too deeply to check") from None
        raise InvalidRequest("; ".join(_describe(e) for e in errors[:5]) or "not a valid CDS Hooks request")
    if body["hook"] != service.hook:
        raise InvalidRequest(f"hook: service {service.id!r} answers {service.hook!r}, not {body['hook']!r}")
    context = body["context"]
    auth = body.get("fhirAuthorization") or {}
    return HookCall(
        hook=body["hook"], hook_instance=body["hookInstance"], patient_id=context["patientId"],
        user_id=context["userId"], context=MappingProxyType(context),
        prefetch=MappingProxyType(body.get("prefetch") or {}), fhir_server=body.get("fhirServer"),
        access_token=auth.get("access_token"), extension=MappingProxyType(body.get("extension") or {}))


def _describe(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "required":
        return f"{where}: missing {error.message.split(' ')[0]}"
    if error.validator == "pattern" and isinstance(error.instance, str) and _CONTROL.search(error.instance):
        return f"{where}: holds a control character (such as NUL or a line break), which is not accepted"
    if error.validator in ("pattern", "const", "enum", "type", "minLength", "maxLength"):
        return f"{where}: not a valid value ({error.validator})"
    return f"{where}: {error.validator} check failed"
