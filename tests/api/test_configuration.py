"""Site configuration the Da Vinci CRD way: discovery advertises each service's options (with the site's defaults
from settings), a request's extension chooses among them, and a bad choice or a bad site default is refused by name."""
from __future__ import annotations

from datetime import date

import pytest

from cds_service import create_app
from cds_service.case_runner import build_request, service_for
from cds_service.knowledge.model import CONFIGURATION_OPTIONS_KEY
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome
from tests.support.cds_client import rules_of

OURS, CRD = "org.spasm-cds.configuration", "davinci-crd.configuration"


@pytest.fixture
def make_client(knowledge, tmp_path):
    apps = []

    def make(**settings):
        app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, deduplicate="off", **settings), knowledge)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["spasm_cds"].database.engine.dispose()


def busy_request(knowledge):
    """(service id, request) of the first patient-view case giving an info card and a warning or critical one."""
    from cds_service.pipeline import respond

    for case in (c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view"):
        service = service_for(knowledge, case)
        body = build_request(knowledge, case, service, date.today())
        indicators = {c["indicator"] for c in respond(body, service, knowledge, Settings(), date.today())["cards"]}
        if "info" in indicators and indicators & {"warning", "critical"}:
            return service.id, body
    raise LookupError("no case gives both an info card and a warning or critical card")


def options_of(client, service_id: str) -> dict[str, dict]:
    service = next(s for s in client.get("/cds-services").get_json()["services"] if s["id"] == service_id)
    return {o["code"]: o for o in service["extension"][CONFIGURATION_OPTIONS_KEY]}


def test_discovery_advertises_each_services_options_with_the_option_defaults(make_client, knowledge):
    client = make_client()
    for service in knowledge.services.values():
        options = options_of(client, service.id)
        assert list(options) == [o.code for o in service.configuration]
        for option in service.configuration:
            assert options[option.code] == {"code": option.code, "type": option.type, "name": option.name,
                                            "description": option.description, "default": option.default}


def test_site_defaults_from_settings_are_advertised_and_applied(make_client, knowledge):
    client = make_client(configuration_defaults="info-cards=false, max-cards=2")
    service_id, body = busy_request(knowledge)
    options = options_of(client, service_id)
    assert (options["info-cards"]["default"], options["max-cards"]["default"]) == (False, 2)

    cards = client.post(f"/cds-services/{service_id}", json=body).get_json()["cards"]

    finding_cards = [c for c in cards if rules_of(c)]
    assert finding_cards and len(finding_cards) <= 2
    assert all(c["indicator"] != "info" for c in finding_cards)


@pytest.mark.parametrize("key", [OURS, CRD])
def test_a_requests_choices_are_honoured(make_client, knowledge, key):
    client = make_client(configuration_defaults="info-cards=false")
    service_id, body = busy_request(knowledge)
    everything = client.post(f"/cds-services/{service_id}", json={**body, "extension": {key: {"info-cards": True}}})
    infos = [c for c in everything.get_json()["cards"] if rules_of(c) and c["indicator"] == "info"]
    assert infos  # the request turned info cards back on

    one = client.post(f"/cds-services/{service_id}", json={**body, "extension": {key: {"max-cards": 1,
                                                                                        "no-such-option": 3}}})

    finding_cards = [c for c in one.get_json()["cards"] if rules_of(c)]
    assert len(finding_cards) == 1 and finding_cards[0]["indicator"] in ("warning", "critical")


@pytest.mark.parametrize("choice", [{"info-cards": "no"}, {"max-cards": 0}, {"max-cards": 21}, {"max-cards": True},
                                    {"max-cards": 2.5}], ids=str)
def test_a_badly_typed_choice_is_a_400_naming_the_option(make_client, knowledge, choice):
    client = make_client()
    service_id, body = busy_request(knowledge)
    response = client.post(f"/cds-services/{service_id}", json={**body, "extension": {OURS: choice}})
    doc = assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 400)
    assert next(iter(choice)) in doc["issue"][0]["diagnostics"]


def test_a_configuration_that_is_not_an_object_is_a_400(make_client, knowledge):
    service_id, body = busy_request(knowledge)
    response = make_client().post(f"/cds-services/{service_id}", json={**body, "extension": {OURS: ["x"]}})
    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 400)


@pytest.mark.parametrize("defaults", ["no-such-option=true", "info-cards=maybe", "max-cards=100", "max-cards=x"])
def test_a_bad_site_default_stops_start_up_naming_the_setting(knowledge, tmp_path, defaults):
    with pytest.raises(ValueError, match="SPASM_CDS_CONFIGURATION_DEFAULTS"):
        create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, configuration_defaults=defaults), knowledge)


@pytest.mark.parametrize("name", ["deduplicate", "store_patient_ids"])
def test_an_on_off_setting_with_another_value_stops_start_up(knowledge, tmp_path, name):
    with pytest.raises(ValueError, match=f"SPASM_CDS_{name.upper()}"):
        create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, **{name: "sometimes"}), knowledge)
