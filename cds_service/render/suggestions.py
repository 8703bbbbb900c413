"""Suggestions whose actions create FHIR R4 resources, built and checked with fhir.resources R4B models."""
from __future__ import annotations

import uuid
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from ..knowledge.model import Concept


def order_lab_suggestion(lab: Concept, patient_id: str, loinc_uri: str, card_uuid: str,
                         reason: str) -> dict[str, Any]:
    """A ready-to-accept suggestion: create a proposed ServiceRequest for the lab's order code."""
    spec = lab.lab
    request = ServiceRequest.model_validate({
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": [{"system": loinc_uri, "code": spec.order_loinc, "display": spec.order_display}],
                 "text": spec.order_display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    })
    return {
        "label": f"Order {spec.order_display}",
        "uuid": str(uuid.uuid5(uuid.UUID(card_uuid), lab.id)),
        "isRecommended": True,
        "actions": [{"type": "create", "description": f"Propose {spec.order_display}",
                     "resource": request.model_dump(mode="json", exclude_none=True)}],
    }


def remove_draft_suggestion(draft_id: str, drug: str, card_uuid: str) -> dict[str, Any]:
    """Remove the draft MedicationRequest that triggered the card (CDS Hooks 2.0: delete by resourceId)."""
    return {
        "label": f"Remove the draft order for {drug}",
        "uuid": str(uuid.uuid5(uuid.UUID(card_uuid), f"delete:{draft_id}")),
        "isRecommended": False,
        "actions": [{"type": "delete", "description": f"Remove the unsigned {drug} order",
                     "resourceId": f"MedicationRequest/{draft_id}"}],
    }
