"""Cards of one indicator come most urgent first (services.yaml card_order), so that a site limit of one card keeps
the most urgent; several findings about one draft order share one card."""
from __future__ import annotations

from datetime import date
from types import MappingProxyType

from cds_service.case_runner import build_request, service_for
from cds_service.knowledge.loader import load_knowledge
from cds_service.knowledge.model import Case
from cds_service.pipeline import respond
from cds_service.settings import Settings
from tests.conftest import REPO

KNOWLEDGE = load_knowledge(REPO)
TODAY = date(2026, 12, 5)
# laryngospasm (airway), potassium 2.4 (severe), tetany with calcium 1.6 mmol/L, CK 60x ULN: four critical cards
CRITICAL_CHART = {
    "patient": {"age": 50, "sex": "female"},
    "conditions": [{"icd10cm": "R25.2"}, {"icd10cm": "J38.5"}, {"icd10cm": "R29.0"}],
    "labs": [{"loinc": "2823-3", "value": 2.4, "unit": "mmol/L", "days_ago": 1},
             {"loinc": "17861-6", "value": 6.4, "unit": "mg/dL", "days_ago": 1},
             {"loinc": "2157-6", "value": 12000, "unit": "U/L", "days_ago": 1}],
}


def _cards(chart: dict, rule: str, hook: str = "patient-view", configuration: dict | None = None) -> list[dict]:
    case = Case(rule=rule, name="t", expect="card", hook=hook, chart=MappingProxyType(chart))
    service = service_for(KNOWLEDGE, case)
    body = build_request(KNOWLEDGE, case, service, TODAY)
    if configuration:
        body["extension"] = {"org.spasm-cds.configuration": configuration}
    return respond(body, service, KNOWLEDGE, Settings.from_env({}), TODAY)["cards"]


def _rules(card: dict) -> list[str]:
    return card["extension"]["org.spasm-cds"]["rules"]


def test_critical_cards_come_airway_first_then_potassium_then_tetany_then_muscle_breakdown():
    cards = [c for c in _cards(CRITICAL_CHART, "laryngospasm-with-spasm-or-tetany") if c["indicator"] == "critical"]
    firsts = [_rules(c)[0] for c in cards]
    assert firsts[:2] == ["laryngospasm-with-spasm-or-tetany", "severe-low-potassium"], firsts
    assert firsts.index("low-calcium-with-tetany") < firsts.index("ck-above-5x-uln"), firsts


def test_a_limit_of_one_card_keeps_the_airway():
    cards = _cards(CRITICAL_CHART, "laryngospasm-with-spasm-or-tetany", configuration={"max-cards": 1})
    shown = [c for c in cards if "missingData" not in c["extension"]["org.spasm-cds"]]
    assert [_rules(c)[0] for c in shown] == ["laryngospasm-with-spasm-or-tetany"]


def test_findings_about_one_order_share_one_card_with_the_most_urgent_first_and_one_removal():
    chart = {"patient": {"age": 80}, "conditions": [{"icd10cm": "H40.2211"}],
             "medications": [{"rxnorm": "36437", "status": "active"}, {"rxnorm": "7804", "status": "active"}],
             "draft_orders": [{"rxnorm": "828348"}]}
    cards = _cards(chart, "beers-skeletal-muscle-relaxant-older-adult", hook="order-select")
    assert len(cards) == 1
    card = cards[0]
    assert _rules(card)[0] == "skeletal-muscle-relaxant-with-opioid"
    assert set(_rules(card)) == {"skeletal-muscle-relaxant-with-opioid", "cyclobenzaprine-serotonergic-drug",
                                 "cyclobenzaprine-anticholinergic-caution",
                                 "beers-skeletal-muscle-relaxant-older-adult"}
    assert card["summary"].endswith("(+3 more on this order)") and len(card["summary"]) < 140
    assert card["detail"].index("oxycodone") < card["detail"].index("sertraline") < card["detail"].index("Beers")
    removals = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert [a["resourceId"] for a in removals] == ["MedicationRequest/draft-0"]
    assert card["selectionBehavior"] == "at-most-one"


def test_two_orders_get_a_card_each():
    chart = {"patient": {"age": 80}, "medications": [{"rxnorm": "7804", "status": "active"}],
             "draft_orders": [{"rxnorm": "828348"}, {"rxnorm": "197943"}]}
    cards = _cards(chart, "beers-skeletal-muscle-relaxant-older-adult", hook="order-sign")
    orders = sorted(c["extension"]["org.spasm-cds"].get("order", "") for c in cards)
    assert orders == ["draft-0", "draft-1"], [c["summary"] for c in cards]
