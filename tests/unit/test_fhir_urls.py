"""URL normalisation and the allow-list, before anything is sent: dot segments, encoded dots and slashes,
backslashes, double slashes and matrix parameters never carry a URL out of its allowed path, and the default
allow-list never lets the service call itself."""
from __future__ import annotations

import pytest

from cds_service.gather.fhir_urls import fhir_server_allowed, normalised_url, under_base
from cds_service.settings import LOCAL_FHIR_ALLOWED_URLS, Settings

ALLOWED = "http://ehr.test/fhir"


@pytest.mark.parametrize(("url", "normal"), [
    ("http://EHR.test/fhir/Patient/p1", "http://ehr.test/fhir/Patient/p1"),
    ("http://ehr.test/fhir/./Patient/p1#frag", "http://ehr.test/fhir/Patient/p1"),
    ("http://ehr.test/fhir//Patient//p1", "http://ehr.test/fhir/Patient/p1"),
    ("http://ehr.test/fhir/../admin/keys", "http://ehr.test/admin/keys"),
    ("http://ehr.test/fhir/a/../../../admin", "http://ehr.test/admin"),
    ("http://ehr.test/fhir/Observation?code=a|b&x=../..", "http://ehr.test/fhir/Observation?code=a|b&x=../.."),
], ids=["case", "dot-and-fragment", "double-slash", "dot-dot", "above-root", "query-untouched"])
def test_urls_are_read_as_the_server_reads_them(url, normal):
    assert normalised_url(url) == normal


@pytest.mark.parametrize("url", [
    "http://ehr.test/fhir/%2e%2e/admin", "http://ehr.test/fhir/%2E%2E/admin", "http://ehr.test/fhir/..%2fadmin",
    "http://ehr.test/fhir/%252e%252e/admin", "http://ehr.test/fhir/..;/admin", "http://ehr.test/fhir\\..\\admin",
    "http://ehr.test/fhir/%5c../admin", "http://ehr.test/fhir/a b", "http://ehr.test/fhir/%00",
    "ftp://ehr.test/fhir", "http://ehr.test@evil.test/fhir", "http://ehr.test:*/fhir",
], ids=["encoded-dots", "encoded-dots-upper", "encoded-slash", "double-encoded", "matrix-parameter", "backslash",
        "encoded-backslash", "space", "nul", "not-http", "user-info", "wildcard-port"])
def test_urls_that_could_be_read_another_way_are_refused(url):
    assert normalised_url(url) is None
    assert not fhir_server_allowed(url, ALLOWED)


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://ehr.test/fhir", True), ("http://ehr.test/fhir/Patient/p1", True),
    ("http://ehr.test/fhir/../admin/keys", False), ("http://ehr.test/fhir/Patient/../../admin", False),
    ("http://ehr.test//fhir/../admin", False), ("http://ehr.test/fhirx/Patient", False),
    ("http://ehr.test/fhir/./Patient/p1", True),
], ids=["base", "under", "escape", "escape-deeper", "double-slash-escape", "not-a-whole-segment", "dot"])
def test_allow_list_compares_the_normalised_path(url, allowed):
    assert fhir_server_allowed(url, ALLOWED) is allowed


def test_under_base_keeps_a_url_inside_the_calls_fhir_server():
    base = "http://127.0.0.1:9/fhir"
    assert under_base("http://127.0.0.1:9/fhir/Patient/p1", base)
    assert not under_base("http://127.0.0.1:9/admin", base)
    assert not under_base("http://127.0.0.1:10/fhir/Patient/p1", base)


def test_default_allow_list_is_loopback_with_auth_off_and_nothing_with_auth_on():
    assert Settings().effective_fhir_allowed_urls == LOCAL_FHIR_ALLOWED_URLS
    assert Settings(auth="on").effective_fhir_allowed_urls == "none"
    assert Settings(auth="on", fhir_allowed_urls=ALLOWED).effective_fhir_allowed_urls == ALLOWED
    assert not fhir_server_allowed("http://127.0.0.1:9/fhir", "none")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_wildcard_port_never_allows_the_services_own_port(host):
    assert not fhir_server_allowed(f"http://{host}:8080/fhir", LOCAL_FHIR_ALLOWED_URLS, own_port=8080)
    assert fhir_server_allowed(f"http://{host}:8090/fhir", LOCAL_FHIR_ALLOWED_URLS, own_port=8080)
    # a port the site names itself is its own choice
    assert fhir_server_allowed(f"http://{host}:8080/fhir", f"http://{host}:8080", own_port=8080)
