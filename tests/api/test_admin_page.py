"""GET /admin/feedback in process: off (404) without SPASM_CDS_ADMIN_TOKEN; with it, 401 (empty body) unless the
request carries that bearer token; the page has a CSP that allows no script, escapes what the database holds, and
bad query parameters are 400 OperationOutcomes."""
from __future__ import annotations

import pytest

from cds_service import create_app
from cds_service.memory import IssuedCard
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome

TOKEN = "s3cret-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_app(knowledge, tmp_path):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, admin_token=TOKEN), knowledge)
    yield app
    app.extensions["spasm_cds"].database.engine.dispose()


def test_the_page_is_off_without_a_token_setting(client):
    response = client.get("/admin/feedback", headers=BEARER)

    assert_operation_outcome(response.status_code, response.content_type, response.data, 404)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "])
def test_without_the_right_bearer_token_it_is_401_with_an_empty_body(admin_app, header):
    response = admin_app.test_client().get("/admin/feedback", headers={"Authorization": header} if header else {})

    assert response.status_code == 401 and response.data == b""
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="spasm-cds-admin"'


def test_with_the_token_the_page_shows_counts_escaped_under_a_strict_csp(admin_app):
    memory = admin_app.extensions["spasm_cds"].memory
    memory.record([IssuedCard("u1", "x", "fp", {"<script>alert(1)</script>": "fp"}, "info")], "svc",
                  "patient-view", "h", "p", memory.key("p"), "c", memory.key("p", "u"))

    response = admin_app.test_client().get("/admin/feedback", headers=BEARER)
    page = response.get_data(as_text=True)

    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<svg id="rules-chart"' in page and '<svg id="periods-chart"' in page


def test_json_format_and_bad_parameters(admin_app):
    client = admin_app.test_client()

    report = client.get("/admin/feedback?format=json&by=month&since=2026-01-01", headers=BEARER)

    assert report.status_code == 200 and report.get_json()["window"] == {"since": "2026-01-01", "until": None,
                                                                        "by": "month"}
    for query in ("by=day", "format=xml", "since=yesterday", "min_feedback=many"):
        bad = client.get(f"/admin/feedback?{query}", headers=BEARER)
        assert_operation_outcome(bad.status_code, bad.content_type, bad.data, 400)


def test_a_short_admin_token_is_refused_at_start():
    with pytest.raises(ValueError, match="SPASM_CDS_ADMIN_TOKEN: at least 16 characters"):
        Settings.from_env({"SPASM_CDS_ADMIN_TOKEN": "letmein"})
