"""The SMART timeline app end to end in a real browser: sekmet-fhir on 127.0.0.1 holding the demo patient whose card
offers the app, the service under gunicorn (2 workers) with the development SMART launcher in front of that sekmet,
and Debian's headless chromium. The try-it page's button does the EHR's part; the app itself goes through
smart-configuration, authorize (PKCE), token and the FHIR reads, and draws the chart, which must hold what sekmet
holds. A screenshot goes to tmp_path, and also to SPASM_CDS_SMART_SCREENSHOT when set (docs/smart-timeline.png)."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cds_service.demo import demo_bundle, load_demos
from cds_service.tools.demo_fhir import as_transaction
from tests.browser.conftest import WAIT_S, WIDTH
from tests.conftest import REPO
from tests.support.fhir_server import FhirServer, free_port
from tests.support.service_server import ServiceServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]
DEMO = "diuretic-trend"


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirServer]:
    with FhirServer() as server:
        demo = load_demos().patient(DEMO)
        assert demo is not None
        server.load_transaction(as_transaction(demo_bundle(demo, date.today())))
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
    save_chart(browser, tmp_path)
    assert (tmp_path / "smart-timeline.png").stat().st_size > 10_000


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
