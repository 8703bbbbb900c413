"""The try-it page in a real browser: the service under gunicorn on 127.0.0.1, Debian's headless chromium driven by
selenium through /usr/bin/chromedriver (selenium-manager never runs). Pick the work-up demo patient, show its cards,
accept a suggested order and see the confirmation. A screenshot goes to tmp_path, and also to the path in
SPASM_CDS_SCREENSHOT when that is set (docs/try-it.png is made this way). Without chromium the test fails in CI and
is skipped elsewhere."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.demo import load_demos
from tests.browser.conftest import WAIT_S, WIDTH
from tests.conftest import REPO
from tests.support.service_server import ServiceServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]
@pytest.fixture(scope="module")
def service() -> Iterator[ServiceServer]:
    with ServiceServer(extra_env={"SPASM_CDS_TRY_IT": "on", "SPASM_CDS_LOG_LEVEL": "WARNING"}) as server:
        yield server


def save_screenshot(driver, tmp_path: Path, name: str, publish: bool = False) -> None:
    """The whole page at WIDTH pixels wide, into tmp_path and, if publish and asked, into SPASM_CDS_SCREENSHOT."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, height)
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)), "chromium took no screenshot"
    asked = os.environ.get("SPASM_CDS_SCREENSHOT")
    if publish and asked:
        target = Path(asked) if Path(asked).is_absolute() else REPO / asked
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    driver.set_window_size(WIDTH, 1000)


def test_pick_a_demo_patient_see_its_card_and_accept_a_suggestion(browser, service, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import WebDriverWait

    demo = next(d for d in load_demos().patients if d.id == "work-up")
    wait = WebDriverWait(browser, WAIT_S)

    browser.get(f"{service.url}/")
    assert "synthetic demo data" in browser.title.lower()
    browser.find_element(By.ID, f"patient-{demo.id}").click()
    browser.find_element(By.ID, "show-cards").click()
    summary = wait.until(visible.visibility_of_element_located((By.CSS_SELECTOR, "h3.card-summary")))

    assert demo.cards[0] in summary.text
    card = browser.find_element(By.CSS_SELECTOR, "article.card")
    assert card.find_element(By.CSS_SELECTOR, ".badge").text.strip().lower() == card.get_attribute("class").split()[-1]
    assert '"hook": "patient-view"' in browser.find_element(By.ID, "request-json").text
    save_screenshot(browser, tmp_path, "try-it-cards.png", publish=True)

    suggestion = card.find_element(By.CSS_SELECTOR, "button.suggestion")
    label = suggestion.text
    suggestion.click()
    confirmation = wait.until(visible.visibility_of_element_located((By.ID, "confirmation")))

    assert f"Feedback recorded: accepted “{label}”" in confirmation.text
    assert demo.cards[0] in confirmation.text
    save_screenshot(browser, tmp_path, "try-it-feedback.png")
    assert (tmp_path / "try-it-cards.png").stat().st_size > 10_000
