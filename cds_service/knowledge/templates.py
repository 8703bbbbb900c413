"""The token language of the FHIR query templates in cards/services.yaml (and a service's prefetch overrides):
which {{...}} tokens this service can fill, and date arithmetic for the today() tokens. The linter checks templates
with it; gather/prefetch.py fills them."""
from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

# every {{...}} in a template; what is inside decides whether it is a token this service can fill
ANY_TOKEN = re.compile(r"\{\{(.*?)\}\}")
NAME = re.compile(r"\s*([A-Za-z.]+)\s*")
# CDS Hooks prefetch date tokens: {{today()}}, {{today() - 90 days}}, {{today() + 1 year}} (as a FHIR date)
TODAY = re.compile(r"\s*today\(\)\s*(?:([+-])\s*(\d{1,4})\s*(day|days|week|weeks|month|months|year|years))?\s*")
USER_TOKENS = {"userPractitionerId": "Practitioner", "userPractitionerRoleId": "PractitionerRole",
                "userPatientId": "Patient", "userRelatedPersonId": "RelatedPerson"}
CONTEXT_FIELDS = ("patientId", "userId", "encounterId")
_NAMED_TOKENS = frozenset({*USER_TOKENS, *(f"context.{field}" for field in CONTEXT_FIELDS)})


def unknown_tokens(template: str) -> list[str]:
    """The {{...}} tokens of a template that render_template cannot fill (for the linter): anything but
    context.patientId/userId/encounterId, the user* tokens and the today() date tokens."""
    out = []
    for match in ANY_TOKEN.finditer(template):
        inner = match.group(1)
        name = NAME.fullmatch(inner)
        known = TODAY.fullmatch(inner) is not None or (name is not None and name.group(1) in _NAMED_TOKENS)
        if not known:
            out.append(match.group(0))
    return out


def shifted(today: date, sign: str, amount: int, unit: str) -> date:
    """today moved by a number of days, weeks, months or years (a month end is kept within the month)."""
    n = amount if sign == "+" else -amount
    if unit.startswith("day"):
        return today + timedelta(days=n)
    if unit.startswith("week"):
        return today + timedelta(weeks=n)
    months = n * (12 if unit.startswith("year") else 1)
    year, month = divmod(today.year * 12 + today.month - 1 + months, 12)
    return date(year, month + 1, min(today.day, calendar.monthrange(year, month + 1)[1]))
