"""The Medications that draft orders name by reference (`medicationReference`), found without the network where
the request holds them: in the draftOrders Bundle itself (by its entries' fullUrl, absolute or urn:uuid, or by
Medication/<id>), or among the prefetched resources. Contained Medications (#id) belong to their draft and are read
by facts. What is found nowhere is read from the FHIR server by gather_resources; what is not found at all leaves
its draft unidentified (see facts.extract_drafts)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_TYPE = "Medication"


def draft_references(context: Mapping[str, Any]) -> list[str]:
    """The distinct medicationReference values of the draft MedicationRequests, contained (#id) ones left out."""
    refs: dict[str, None] = {}
    for _, resource in _entries(context.get("draftOrders")):
        if resource.get("resourceType") != "MedicationRequest" or resource.get("medicationCodeableConcept") is not None:
            continue
        reference = resource.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        if isinstance(ref, str) and ref and not ref.startswith("#"):
            refs[ref] = None
    return list(refs)


def found_in_request(refs: Iterable[str], context: Mapping[str, Any],
                     prefetched: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Reference -> Medication for each reference the draftOrders Bundle holds, else the prefetched data holds
    (a relative Medication/<id> only: an absolute URL may name another server's resource of the same id)."""
    in_bundle: dict[str, dict[str, Any]] = {}
    for entry, resource in _entries(context.get("draftOrders")):
        if resource.get("resourceType") != _TYPE:
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            in_bundle.setdefault(full_url, resource)
            tail = _type_and_id(full_url)
            if tail:  # an absolute fullUrl .../Medication/<id> also answers the relative Medication/<id>
                in_bundle.setdefault(tail, resource)
        if isinstance(resource.get("id"), str):
            in_bundle.setdefault(f"{_TYPE}/{resource['id']}", resource)
    in_prefetch = {f"{_TYPE}/{r['id']}": dict(r) for r in prefetched
                   if r.get("resourceType") == _TYPE and isinstance(r.get("id"), str)}
    found: dict[str, dict[str, Any]] = {}
    for ref in refs:
        medication = in_bundle.get(ref) or in_prefetch.get(ref)
        if medication is not None:
            found[ref] = medication
    return found


def readable(ref: str) -> bool:
    """Whether a reference can be read from a FHIR server: Medication/<id> or an absolute URL ending so
    (an absolute URL is read only when it lies on the call's fhirServer: the FHIR client refuses any other)."""
    return _type_and_id(ref) is not None


def _type_and_id(ref: str) -> str | None:
    """`Medication/<id>` for a relative or absolute (http/https) reference to a Medication, else None."""
    parts = ref.split("/")
    if len(parts) < 2 or parts[-2] != _TYPE or not parts[-1]:
        return None
    if len(parts) > 2 and not ref.startswith(("http://", "https://")):
        return None
    return f"{_TYPE}/{parts[-1]}"


def _entries(bundle: Any) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(entry, resource) of each well-formed entry (EHR data is read defensively, never trusted)."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            yield entry, resource
