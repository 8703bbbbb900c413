"""The HTML report of `spasm-cds evaluate FOLDER --html` in a real browser (Debian's headless chromium through
/usr/bin/chromedriver): made from the 48 Synthea bundles with the cramp what-if, opened from disk, its plots render
as SVG with their titles, the what-if settings are labelled, and the counts on the page are those of --json. A
screenshot goes to tmp_path, and to SPASM_CDS_REPORT_SCREENSHOT when set (docs/evaluate-report.png is made so)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from cds_service.cli import main
from tests.browser.conftest import WIDTH
from tests.conftest import REPO
from tests.test_evaluate_cli import BUNDLES, needs_bundles

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    os.environ.setdefault("SPASM_CDS_KNOWLEDGE_DIR", str(REPO))
    page = tmp_path_factory.mktemp("report") / "report.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", str(BUNDLES), "--assume-cramps", "--today", "2026-06-01", "--quiet", "--json",
                     "--workers", "2", "--html", str(page)]) == 0
    return page, json.loads(out.getvalue())


@needs_bundles
def test_the_report_shows_its_plots_settings_and_the_counts_of_the_json(browser, report, tmp_path):
    from selenium.webdriver.common.by import By

    page, figures = report
    browser.get(page.as_uri())

    assert browser.title == "alert burden on 2026-06-01"
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings[:3] == ["Cards per patient", "Cards by indicator", "Findings by rule"]
    plots = browser.find_elements(By.CSS_SELECTOR, ".plot svg")
    assert len(plots) >= 3
    for plot in plots:  # drawn: the browser gives each a size, and its bars are there
        assert plot.size["width"] > 200 and plot.size["height"] > 100
        assert plot.find_elements(By.CSS_SELECTOR, "g[id^='patch']")
    assert "Findings by rule" in plots[2].text
    settings = {e.get_attribute("data-setting"): e.text for e in browser.find_elements(By.CSS_SELECTOR, "dd")}
    assert settings["assume_cramps"] == "yes" and settings["today"] == "2026-06-01"
    assert settings["draft_order"] == "none"
    assert browser.find_element(By.ID, "patients").text == str(figures["patients"]) == "48"
    assert browser.find_element(By.ID, "cards").text == str(figures["cards"])
    rules = browser.find_elements(By.CSS_SELECTOR, "table[data-counts='findings-by-rule'] tr")[1:]
    shown = {r.find_elements(By.TAG_NAME, "td")[0].text: int(r.find_elements(By.TAG_NAME, "td")[1].text)
             for r in rules}
    assert shown == figures["findings_by_rule"]
    histogram = browser.find_elements(By.CSS_SELECTOR, "table[data-counts='cards-per-patient'] td.n")
    assert sum(int(c.text) for c in histogram) == 48
    assert browser.find_elements(By.CSS_SELECTOR, "script, link, img") == []  # one file, nothing fetched

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, min(height, 2400))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.set_window_size(WIDTH, 1000)
    asked = os.environ.get("SPASM_CDS_REPORT_SCREENSHOT")
    if asked:
        shutil.copyfile(shot, Path(asked) if Path(asked).is_absolute() else REPO / asked)
