"""The SMART timeline app end to end in a real browser: sekmet-fhir on 127.0.0.1 holding the demo patient whose card
offers the app, the service under gunicorn (2 workers) with the development SMART launcher in front of that sekmet,
and Debian's headless chromium. The try-it page's button does the EHR's part; the app itself goes through
smart-configuration, authorize (PKCE), token and the FHIR reads, and draws the chart, which must hold what sekmet
holds. A screenshot goes to tmp_path, and also to SPASM_CDS_SMART_SCREENSHOT when set (docs/smart-timeline.png).
A second patient, built here from the demo, mixes results with and without their laboratory's reference range."""
from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from cds_service.demo import demo_bundle, load_demos
from cds_service.render.smart_link import smart_link
from cds_service.tools.demo_fhir import as_transaction
from tests.browser.conftest import WAIT_S, WIDTH
from tests.conftest import REPO
from tests.support.cds_client import post_json
from tests.support.fhir_server import FhirServer, free_port
from tests.support.service_server import ServiceServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]
DEMO = "diuretic-trend"
RANGED = "lab-range-golf"  # the demo patient again, with reference ranges on some results only (ranged_bundle)
RULE = "diuretic-low-potassium"  # the rule whose card carries the demo's timeline link


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def ranged_bundle(demo_bundle: dict[str, Any]) -> dict[str, Any]:
    """The demo's Bundle under other ids, its results' reference ranges replaced: potassium (fallback 3.5-5.0)
    has a range in another unit (not counted) on its first result, 4.3-5.3 on its second, 3.6-5.2 on its fourth
    (the newest with one) and none on the others; magnesium has none and its newest value falls to 1.6."""
    bundle = json.loads(json.dumps(demo_bundle).replace("try-it-golf", RANGED))
    observations = sorted((e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"),
                          key=lambda o: o["effectiveDateTime"])
    by_code: dict[str, list[dict[str, Any]]] = {}
    for obs in observations:
        obs.pop("referenceRange", None)
        obs.pop("interpretation", None)
        by_code.setdefault(obs["code"]["coding"][0]["code"], []).append(obs)
    potassium, magnesium = by_code["2823-3"], by_code["19123-9"]
    assert [o["valueQuantity"]["value"] for o in potassium] == [4.4, 4.2, 3.8, 3.5, 3.2]
    potassium[0]["referenceRange"] = [{"low": quantity(13.7, "mg/dL"), "high": quantity(20.3, "mg/dL")}]
    potassium[1]["referenceRange"] = [{"low": quantity(4.3, "mmol/L"), "high": quantity(5.3, "mmol/L")}]
    potassium[3]["referenceRange"] = [{"text": "no numbers"}, {"low": quantity(3.6, "mmol/L"),
                                                               "high": quantity(5.2, "mmol/L")}]
    assert [o["valueQuantity"]["value"] for o in magnesium] == [2.1, 1.9, 1.8]
    magnesium[2]["valueQuantity"]["value"] = 1.6
    return bundle


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirServer]:
    with FhirServer() as server:
        demo = load_demos().patient(DEMO)
        assert demo is not None
        bundle = demo_bundle(demo, date.today())
        server.load_transaction(as_transaction(copy.deepcopy(bundle)))
        server.load_transaction(as_transaction(ranged_bundle(bundle)))
        yield server


@pytest.fixture(scope="module")
def service(fhir) -> Iterator[ServiceServer]:
    env = {"SPASM_CDS_TRY_IT": "on", "SPASM_CDS_SMART_FHIR_URL": fhir.base_url, "SPASM_CDS_LOG_LEVEL": "WARNING"}
    with ServiceServer(workers=2, extra_env=env) as server:
        yield server


def expected_chart(fhir: FhirServer, patient: str, context: dict) -> tuple[dict[str, list[str]], list[str]]:
    """What sekmet holds for the chart, read directly: per lab, the dates of results in the charted unit; and the
    start (authoredOn) of each order of a charted medication."""
    systems = context["systems"]
    points: dict[str, list[str]] = {}
    for lab in context["labs"]:
        codes = ",".join(f"{systems['loinc']}|{code}" for code in lab["loinc"])
        bundle = fhir.get_json(f"Observation?patient={patient}&code={codes}&_count=1000")
        points[lab["id"]] = sorted(e["resource"]["effectiveDateTime"][:10] for e in bundle.get("entry", ())
                                   if e.get("search", {}).get("mode", "match") == "match"
                                   and e["resource"].get("valueQuantity", {}).get("code") == lab["unit"])
    wanted = {code for medication in context["medications"] for code in medication["rxnorm"]}
    bundle = fhir.get_json(f"MedicationRequest?patient={patient}&_count=1000")
    starts = sorted(e["resource"]["authoredOn"][:10] for e in bundle.get("entry", ())
                    if any(c.get("code") in wanted for c in e["resource"]["medicationCodeableConcept"]["coding"]))
    return points, starts


def test_card_link_launches_the_timeline_which_charts_the_fhir_data(browser, fhir, service, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{service.url}/")
    browser.find_element(By.ID, f"patient-{DEMO}").click()
    browser.find_element(By.ID, "show-cards").click()
    launch = wait.until(visible.element_to_be_clickable((By.CSS_SELECTOR, "button.smart-launch")))
    response = json.loads(browser.find_element(By.ID, "response-json").text)
    (link,) = [link for card in response["cards"] for link in card.get("links", ()) if link["type"] == "smart"]
    context = json.loads(link["appContext"])
    patient = browser.find_element(By.CSS_SELECTOR, "form.smart-app input[name=patient]").get_attribute("value")
    launch.click()

    wait.until(lambda driver: driver.find_element(By.ID, "status").text.startswith("Chart drawn")
               or driver.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    assert browser.current_url.startswith(f"{service.url}/smart/timeline/app")
    assert "code=" not in browser.current_url  # the spent code is taken out of the address bar

    points, starts = expected_chart(fhir, patient, context)
    assert [lab["id"] for lab in context["labs"]] == ["potassium", "magnesium"]
    assert len(points["potassium"]) == 5 and len(points["magnesium"]) == 3 and len(starts) == 1
    for lab, dates in points.items():
        drawn = browser.find_elements(By.CSS_SELECTOR, f"g.panel[data-lab='{lab}'] circle.point")
        assert sorted(p.get_attribute("data-date") for p in drawn) == dates
    markers = browser.find_elements(By.CSS_SELECTOR, "line.med-start")
    assert sorted(m.get_attribute("data-date") for m in markers) == starts
    rows = browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
    assert len(rows) == sum(len(d) for d in points.values())
    assert browser.find_element(By.CSS_SELECTOR, "#medications-table tbody td").text.startswith("hydrochlorothiazide")
    # the demo's results all carry their laboratory's range: each panel's band is its newest result's
    for lab, (low, high) in {"potassium": ("3.5", "5.1"), "magnesium": ("1.7", "2.3")}.items():
        band = browser.find_element(By.CSS_SELECTOR, f"g.panel[data-lab='{lab}'] rect.band")
        assert (band.get_attribute("data-low"), band.get_attribute("data-high")) == (low, high)
        caption = browser.find_element(By.CSS_SELECTOR, f"g.panel[data-lab='{lab}'] text.range-caption")
        assert caption.text == f"range: the laboratory's, from {points[lab][-1]}"
    ranges = [(cells[0].text, cells[4].text) for cells in (row.find_elements(By.TAG_NAME, "td") for row in rows)]
    assert sorted(ranges) == [("magnesium", "1.7–2.3")] * 3 + [("potassium", "3.5–5.1")] * 5
    outside = browser.find_elements(By.CSS_SELECTOR, "g.panel[data-lab='potassium'] circle.point.outside")
    assert [p.get_attribute("data-value") for p in outside] == ["3.2"]  # 3.5 is inside 3.5-5.1
    save_chart(browser, tmp_path)
    assert (tmp_path / "smart-timeline.png").stat().st_size > 10_000


def test_the_band_is_the_laboratorys_range_when_the_results_carry_one_else_the_fallback(browser, fhir, service,
                                                                                         knowledge):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    link = smart_link([RULE], service.url, knowledge)
    assert link is not None
    status, _, body = post_json(f"{service.url}/smart-launcher/fhir/_services/smart/Launch",
                                {"launchUrl": link["url"], "parameters": {"patient": RANGED,
                                                                          "appContext": link["appContext"]}})
    assert status == 201, body
    iss = quote(f"{service.url}/smart-launcher/fhir", safe="")
    browser.get(f"{link['url']}?iss={iss}&launch={json.loads(body)['launch_id']}")
    WebDriverWait(browser, WAIT_S).until(lambda driver: driver.find_element(By.ID, "status").text.startswith(
        "Chart drawn") or driver.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text

    points, _ = expected_chart(fhir, RANGED, json.loads(link["appContext"]))
    potassium, magnesium = points["potassium"], points["magnesium"]
    assert len(potassium) == 5 and len(magnesium) == 3

    def panel(lab: str, what: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f"g.panel[data-lab='{lab}'] {what}")

    # potassium: the band is the range of the newest result that has one (the 4th, 3.6-5.2), not the fallback
    band = panel("potassium", "rect.band")
    assert (band.get_attribute("data-low"), band.get_attribute("data-high")) == ("3.6", "5.2")
    assert band.get_attribute("data-source") == "laboratory"
    assert panel("potassium", "text.range-caption").text == f"range: the laboratory's, from {potassium[3]}"
    # magnesium: no result has one, so the appContext's fallback from mappings/
    band = panel("magnesium", "rect.band")
    assert (band.get_attribute("data-low"), band.get_attribute("data-high")) == ("1.7", "2.3")
    assert band.get_attribute("data-source") == "fallback"
    assert panel("magnesium", "text.range-caption").text == \
        "range: typical adult range (no laboratory range on the results)"

    # outside: 4.2 against its own 4.3-5.3, 3.5 against its own 3.6-5.2 (both inside the fallback 3.5-5.0),
    # 3.2 against the band; 4.4 (its range is in mg/dL, not counted) and 3.8 are inside the band
    outside = browser.find_elements(By.CSS_SELECTOR, "g.panel[data-lab='potassium'] circle.point.outside")
    assert [(p.get_attribute("data-date"), p.get_attribute("data-value")) for p in outside] == \
        [(potassium[1], "4.2"), (potassium[3], "3.5"), (potassium[4], "3.2")]
    outside = browser.find_elements(By.CSS_SELECTOR, "g.panel[data-lab='magnesium'] circle.point.outside")
    assert [(p.get_attribute("data-date"), p.get_attribute("data-value")) for p in outside] == [(magnesium[2], "1.6")]

    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#results-table thead th")]
    assert headers == ["Test", "Date", "Value", "Unit", "Range", "Charted"]
    table = [[td.text for td in row.find_elements(By.TAG_NAME, "td")]
             for row in browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")]
    assert [(cells[2], cells[4]) for cells in table if cells[0] == "potassium"] == \
        [("4.4", "—"), ("4.2", "4.3–5.3"), ("3.8", "—"), ("3.5", "3.6–5.2"), ("3.2", "—")]
    assert [cells[4] for cells in table if cells[0] == "magnesium"] == ["—"] * 3


@pytest.mark.parametrize(("where", "said"), [
    ("service", "has no SMART configuration (HTTP 404)"),  # no .well-known/smart-configuration at all
    ("fhir", "does not offer the SMART EHR launch"),  # sekmet's configuration is for backend services only
    ("nowhere", "could not be reached"),  # a port nothing listens on
    ("none", "needs the launch parameters iss and launch"),  # opened by hand, not by an EHR
], ids=["no-configuration", "no-ehr-launch", "unreachable", "no-launch"])
def test_an_iss_that_cannot_launch_the_app_is_said_on_the_page(browser, fhir, service, where, said):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import WebDriverWait

    iss = {"fhir": fhir.base_url, "service": f"{service.url}/knowledge", "none": "",
           "nowhere": f"http://127.0.0.1:{free_port()}/fhir"}[where]
    browser.get(f"{service.url}/smart/timeline/launch" + (f"?iss={iss}&launch=any" if iss else ""))
    error = WebDriverWait(browser, WAIT_S).until(visible.visibility_of_element_located((By.ID, "error")))
    assert said in error.text
    assert urlsplit(iss).netloc in error.text
    assert browser.current_url.startswith(f"{service.url}/smart/timeline/launch")


def save_chart(driver, tmp_path: Path) -> None:
    """The whole page at WIDTH pixels into tmp_path, and into SPASM_CDS_SMART_SCREENSHOT when that is set."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, height + 120)  # the window's own frame takes some of its height
    shot = tmp_path / "smart-timeline.png"
    assert driver.save_screenshot(str(shot)), "chromium took no screenshot"
    asked = os.environ.get("SPASM_CDS_SMART_SCREENSHOT")
    if asked:
        target = Path(asked) if Path(asked).is_absolute() else REPO / asked
        shutil.copyfile(shot, target)
    driver.set_window_size(WIDTH, 1000)
