"""The try-it page's SMART button: a card whose rule offers the timeline app shows it as a button (not as a plain
link), and pressing it does the EHR's part: the launch is registered with the development launcher (patient and
the card's appContext) and the browser is sent to the app with iss and launch. A forged link is refused on the
page; with the launcher off, the page says so."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service import create_app
from cds_service.api.smart_launcher import store
from cds_service.settings import Settings
from tests.api.test_try_it import Forms, alert
from tests.conftest import REPO

DEMO = "diuretic-trend"


def page_client(tmp_path, knowledge, **settings):
    return create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, **settings), knowledge).test_client()


def app_forms(page: str) -> list[dict]:
    return [f for f in Forms(page).forms if f["action"].endswith("/try-it/smart")]


def test_the_button_registers_the_launch_and_opens_the_app(tmp_path, knowledge):
    client = page_client(tmp_path, knowledge)
    page = client.post("/try-it", data={"run": DEMO}).get_data(as_text=True)
    (form,) = app_forms(page)
    assert form["buttons"][0]["text"] == "Potassium and magnesium over time, with diuretic start dates"
    assert 'href="http://localhost/smart/timeline/launch"' not in page  # a button, not a link without a launch

    answer = client.post("/try-it/smart", data=form["fields"])

    assert answer.status_code == 303
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == "http://localhost/smart/timeline/launch"
    query = parse_qs(target.query)
    assert query["iss"] == ["http://localhost/smart-launcher/fhir"]
    # the launcher knows the launch, with the card's patient and appContext
    with client.application.app_context():
        launch = store().get("launch", query["launch"][0])
    assert launch == {"patient": form["fields"]["patient"], "appContext": form["fields"]["app_context"]}
    assert [lab["id"] for lab in json.loads(launch["appContext"])["labs"]] == ["potassium", "magnesium"]


def test_demos_without_the_link_show_no_button(tmp_path, knowledge):
    client = page_client(tmp_path, knowledge)
    assert app_forms(client.post("/try-it", data={"run": "contributors"}).get_data(as_text=True)) == []


@pytest.mark.parametrize("field", ["patient", "url", "app_context"])
def test_a_forged_launch_is_refused_on_the_page(tmp_path, knowledge, field):
    client = page_client(tmp_path, knowledge)
    (form,) = app_forms(client.post("/try-it", data={"run": DEMO}).get_data(as_text=True))
    forged = {**form["fields"], field: form["fields"][field] + "x"}

    answer = client.post("/try-it/smart", data=forged)

    assert answer.status_code == 400
    assert "was not shown by this page" in alert(answer.get_data(as_text=True))


def test_with_the_launcher_off_the_page_says_an_ehr_must_launch_the_app(tmp_path, knowledge):
    client = page_client(tmp_path, knowledge, smart_launcher="off")
    (form,) = app_forms(client.post("/try-it", data={"run": DEMO}).get_data(as_text=True))

    answer = client.post("/try-it/smart", data=form["fields"])

    assert answer.status_code == 409
    assert "SPASM_CDS_SMART_LAUNCHER" in alert(answer.get_data(as_text=True))
