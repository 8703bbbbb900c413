"""Suggestions whose actions create FHIR R4 resources. The resources are plain dicts: `spasm-cds lint` and the
knowledge tests check each one the knowledge can emit against fhir.resources' R4B model (knowledge.lint
.suggestion_problems), which serving does not import (~24 MiB in the master and so in every worker, issue 16)."""
from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import orjson

from ..knowledge.model import Concept


def order_lab_suggestion(lab: Concept, patient_id: str, loinc_uri: str, card_uuid: str,
                         reason: str) -> dict[str, Any]:
    """A ready-to-accept suggestion: create a proposed ServiceRequest for the lab's order code."""
    spec = lab.lab_spec
    if spec.order_loinc is None or spec.order_display is None:  # the lint refuses a suggested lab without lab.order
        raise ValueError(f"lab {lab.id!r} has no lab.order to suggest")
    request = orjson.loads(_service_request(lab.id, loinc_uri, spec.order_loinc, spec.order_display))
    request["subject"] = {"reference": f"Patient/{patient_id}"}
    request["reasonCode"] = [{"text": reason}]
    return {
        "label": f"Order {spec.order_display}",
        "uuid": str(uuid.uuid5(uuid.UUID(card_uuid), lab.id)),
        "isRecommended": True,
        "actions": [{"type": "create", "description": f"Propose {spec.order_display}", "resource": request}],
    }


def service_request(loinc_uri: str, loinc: str, display: str) -> dict[str, Any]:
    """The proposed ServiceRequest for a lab's order code, with a placeholder subject and reason (the caller sets
    both), in the shape and key order fhir.resources' R4B model dumps it (knowledge.lint.suggestion_problems)."""
    return {
        "resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
        "code": {"coding": [{"system": loinc_uri, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": "Patient/template"}, "reasonCode": [{"text": "template"}],
    }


@lru_cache(maxsize=256)
def _service_request(lab_id: str, loinc_uri: str, loinc: str, display: str) -> bytes:
    """The lab's ServiceRequest as JSON, built once: per call only the subject and reason are set on a fresh copy
    parsed from it (ten times cheaper than a deepcopy)."""
    return orjson.dumps(service_request(loinc_uri, loinc, display))


def remove_draft_suggestion(draft_id: str, drug: str, card_uuid: str) -> dict[str, Any]:
    """Remove the draft MedicationRequest that triggered the card (CDS Hooks 2.0: delete by resourceId)."""
    return {
        "label": f"Remove the draft order for {drug}",
        "uuid": str(uuid.uuid5(uuid.UUID(card_uuid), f"delete:{draft_id}")),
        "isRecommended": False,
        "actions": [{"type": "delete", "description": f"Remove the unsigned {drug} order",
                     "resourceId": f"MedicationRequest/{draft_id}"}],
    }
