"""The closed names the service speaks in, as enums: the hooks it answers and the kinds of chart data it reads.

A StrEnum member equals its string, so YAML, JSON and prefetch keys compare with it directly."""
from __future__ import annotations

from enum import StrEnum


class Hook(StrEnum):
    """The CDS Hooks this service answers; each definition is at hookVersion 1.0."""

    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"

    @property
    def version(self) -> str:
        """The hookVersion of the hook definition (CDS Hooks library)."""
        return "1.0"


ORDER_HOOKS = (Hook.ORDER_SELECT, Hook.ORDER_SIGN)  # the hooks whose context carries draft orders


class DataKind(StrEnum):
    """A kind of chart data: one FHIR query (cards/services.yaml data:) and one prefetch key each."""

    PATIENT = "patient"
    MEDICATION_REQUESTS = "medication-requests"
    MEDICATION_STATEMENTS = "medication-statements"
    CONDITIONS = "conditions"
    OBSERVATIONS = "observations"


MEDICATION_DATA = (DataKind.MEDICATION_REQUESTS, DataKind.MEDICATION_STATEMENTS)
DRAFT_ORDERS = "draft-orders"  # what the missing-data notice names when a draft order's drug could not be read
