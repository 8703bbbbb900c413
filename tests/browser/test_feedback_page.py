"""The feedback report page in a real browser: the service under gunicorn on 127.0.0.1 on a database seeded with
cards and feedback of eight weeks, Debian's headless chromium driven by selenium. The admin token goes in the
Authorization header of every request the page makes, through the DevTools protocol (Network.setExtraHTTPHeaders),
as an admin's client would send it; the page sets no cookie and runs no script. The tables and both charts must show
the seeded counts. A screenshot goes to tmp_path, and also to the path in SPASM_CDS_FEEDBACK_SCREENSHOT when that
is set (docs/feedback-report.png is made this way)."""
from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.feedback_report import wilson_lower_bound
from cds_service.memory import IssuedCard
from cds_service.settings import Settings
from cds_service.state import open_database
from cds_service.state.feedback import FeedbackItem, FeedbackStore
from cds_service.state.suppression import CardMemory, read_secret
from tests.browser.conftest import WIDTH
from tests.conftest import REPO
from tests.support.service_server import ServiceServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]
TOKEN = "browser-test-admin-token-6f1d2c"
T0 = 1_800_000_000  # 2027-01-15
WEEK = 7 * 86_400
SUGGESTIONS = (("order-lab:magnesium", "Order serum magnesium"), ("remove-draft", "Remove the draft order for X"))


def seed(data_dir: Path, knowledge) -> dict[str, Counter[str]]:
    """Eight weeks of cards of six real rules, with feedback drawn at rates that differ per rule (a fixed seed);
    the first two rules' cards offer two suggestions, of which an accepted card accepts one or both; returns the
    counts per rule that the page must show."""
    database = open_database(Settings(data_dir=data_dir).effective_database_url)
    rules = sorted(knowledge.rules)[:6]
    override_rate = dict(zip(rules, (0.85, 0.6, 0.4, 0.25, 0.15, 0.5), strict=True))
    draw = random.Random(15)
    pick = random.Random(7)  # which suggestions an acceptance names (apart, so the outcomes drawn stay the same)
    now = [T0]
    memory = CardMemory(database, read_secret(database), clock=lambda: now[0])
    store = FeedbackStore(database, clock=lambda: T0 + 9 * WEEK)
    expected: dict[str, Counter[str]] = {r: Counter() for r in rules}
    items = []
    for week in range(8):
        now[0] = T0 + week * WEEK
        cards = []
        for rule in rules:
            for n in range(draw.randint(6, 14)):
                uuid = f"{rule}-{week}-{n}"
                offered = {f"{uuid}-{i}": {"rule": rule, "kind": kind, "label": label}
                           for i, (kind, label) in enumerate(SUGGESTIONS)} if rule in rules[:2] else {}
                cards.append(IssuedCard(uuid, rule, "fp", {rule: "fp"}, "warning",
                                        {rule: knowledge.rules[rule].version}, offered))
                expected[rule]["issued"] += 1
                for suggestion in offered.values():
                    expected[rule][f"offered {suggestion['label']}"] += 1
                roll = draw.random()
                if roll < 0.2:
                    continue  # no feedback
                if draw.random() < override_rate[rule]:
                    code = draw.choice(["snooze-30d", "not-relevant", "already-addressed"])
                    items.append(FeedbackItem(uuid, "overridden", now[0] * 1000, reason_code=code))
                    expected[rule]["overridden"] += 1
                    expected[rule][code] += 1
                else:
                    chosen = tuple(sid for sid in offered if pick.random() < 0.6)
                    items.append(FeedbackItem(uuid, "accepted", now[0] * 1000, accepted_suggestions=chosen))
                    expected[rule]["accepted"] += 1
                    for sid in chosen:
                        expected[rule][f"accepted {offered[sid]['label']}"] += 1
        memory.record(cards, "svc", "patient-view", f"h{week}", "p", memory.key("p"), "c", memory.key("p", "u"))
    store.store("svc", items)
    database.engine.dispose()
    return expected


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, knowledge) -> Iterator[tuple[ServiceServer, dict[str, Counter[str]]]]:
    data_dir = tmp_path_factory.mktemp("feedback-page")
    expected = seed(data_dir, knowledge)
    env = {"SPASM_CDS_DATA_DIR": str(data_dir), "SPASM_CDS_ADMIN_TOKEN": TOKEN, "SPASM_CDS_LOG_LEVEL": "WARNING"}
    with ServiceServer(extra_env=env) as server:
        yield server, expected


def test_the_report_page_shows_the_seeded_counts_in_its_tables_and_charts(browser, seeded, knowledge, tmp_path):
    from selenium.webdriver.common.by import By

    server, expected = seeded
    browser.get(f"{server.url}/admin/feedback")
    assert "Feedback report" not in browser.page_source  # no token yet: 401, nothing shown

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
    try:
        browser.get(f"{server.url}/admin/feedback?min_feedback=20")
        assert browser.title == "spasm-cds feedback report"
        for rule, counts in expected.items():
            row = browser.find_element(By.CSS_SELECTOR, f'#rules tr[data-rule="{rule}"]')
            assert int(row.find_element(By.CSS_SELECTOR, "td.issued").text) == counts["issued"], rule
            assert row.find_element(By.CSS_SELECTOR, "td.accepted").text.startswith(f"{counts['accepted']} ("), rule
            assert row.find_element(By.CSS_SELECTOR, "td.overridden").text.startswith(f"{counts['overridden']} (")
            assert int(row.find_element(By.CSS_SELECTOR, "td.snoozed").text) == counts["snooze-30d"], rule
            assert int(row.find_element(By.CSS_SELECTOR, "td.not-relevant").text) == counts["not-relevant"], rule
            bar = browser.find_element(By.CSS_SELECTOR, f'#rules-chart g.bar[data-rule="{rule}"]')
            assert int(bar.get_attribute("data-issued")) == counts["issued"]
            assert bar.find_element(By.CSS_SELECTOR, "rect.accepted").size["width"] > 0
        shown = 0
        for row in browser.find_elements(By.CSS_SELECTOR, "#suggestions tr[data-rule]"):
            rule, label = row.get_attribute("data-rule"), row.find_element(By.CSS_SELECTOR, "td.suggestion").text
            offered, took = expected[rule][f"offered {label}"], expected[rule][f"accepted {label}"]
            assert int(row.find_element(By.CSS_SELECTOR, "td.offered").text) == offered > 0, (rule, label)
            assert row.find_element(By.CSS_SELECTOR, "td.accepted").text == \
                f"{took}/{offered} ({100 * took / offered:.0f}%)", (rule, label)
            shown += 1
        assert shown == 2 * len(SUGGESTIONS)  # the first two rules, each suggestion once
        ranked = [r.get_attribute("data-rule")
                  for r in browser.find_elements(By.CSS_SELECTOR, "#review-first tr[data-rule]")]
        assert ranked and ranked[0] == max(expected, key=lambda r: wilson_lower_bound(
            expected[r]["overridden"], expected[r]["overridden"] + expected[r]["accepted"]))
        issued_points = browser.find_elements(By.CSS_SELECTOR, '#periods-chart g[data-series="issued"] circle')
        assert [int(p.get_attribute("data-value")) for p in issued_points] == \
            [int(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#periods tr td:nth-child(2)")]
        assert len(issued_points) == 8  # one point a week
        assert sum(int(p.get_attribute("data-value")) for p in issued_points) == \
            sum(c["issued"] for c in expected.values())
        save_screenshot(browser, tmp_path / "feedback-report.png")
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def save_screenshot(driver, shot: Path) -> None:
    """The whole page at WIDTH pixels wide, into shot and, if asked, into SPASM_CDS_FEEDBACK_SCREENSHOT."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, height)
    assert driver.save_screenshot(str(shot)), "chromium took no screenshot"
    assert shot.stat().st_size > 10_000
    asked = os.environ.get("SPASM_CDS_FEEDBACK_SCREENSHOT")
    if asked:
        target = Path(asked) if Path(asked).is_absolute() else REPO / asked
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    driver.set_window_size(WIDTH, 1000)
