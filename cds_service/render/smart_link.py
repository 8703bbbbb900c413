"""A card's SMART app link: the rules' `card.smart_link` (labs to chart, medications whose start dates to mark)
-> a CDS Hooks link of type smart to the timeline app, whose appContext carries the codes the app queries the
EHR's FHIR server by (read from mappings/), their labels, units and fallback ranges."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..knowledge.model import Knowledge, SmartLink

APP_PATH = "/smart/timeline/launch"
APP_CONTEXT_VERSION = 1


def app_context(links: list[SmartLink], knowledge: Knowledge) -> dict[str, Any]:
    """What the timeline app needs to query and draw, for one or more rules' links (concepts merged in order)."""
    labs = list(dict.fromkeys(cid for link in links for cid in link.labs))
    medications = list(dict.fromkeys(cid for link in links for cid in link.medications))
    chart_labs = []
    for cid in labs:
        concept = knowledge.concepts[cid]
        spec = concept.lab_spec
        entry: dict[str, Any] = {"id": cid, "label": concept.label, "unit": spec.canonical_unit,
                                 "loinc": list(concept.codes.get("loinc", ()))}
        if spec.fallback_low is not None:
            entry["low"] = spec.fallback_low
        if spec.fallback_high is not None:
            entry["high"] = spec.fallback_high
        chart_labs.append(entry)
    chart_medications = [{"id": cid, "label": knowledge.concepts[cid].label,
                          "rxnorm": list(knowledge.terminology.rxnorm_codes(cid))} for cid in medications]
    return {"version": APP_CONTEXT_VERSION, "title": links[0].label,
            "systems": {"loinc": knowledge.systems["loinc"][0], "rxnorm": knowledge.systems["rxnorm"][0]},
            "labs": chart_labs, "medications": chart_medications}


def smart_link(rule_ids: Sequence[str], base_url: str, knowledge: Knowledge) -> dict[str, Any] | None:
    """The timeline app link of a card about these rules, or None when none of them offers it. A shared card
    merges the charted concepts of its rules under the first one's label."""
    links = [link for link in (knowledge.rules[r].card.smart_link for r in rule_ids) if link is not None]
    if not links:
        return None
    return {"label": links[0].label, "url": base_url.rstrip("/") + APP_PATH, "type": "smart",
            "appContext": json.dumps(app_context(links, knowledge), separators=(",", ":"))}
