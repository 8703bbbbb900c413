"""GET /cds-services: the discovery document lists each service with the prefetch its rules need."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


def test_discovery_lists_the_patient_view_service(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    service = services["spasm-cramps-patient-view"]
    assert service["hook"] == "patient-view"
    assert service["title"] and service["description"]
    assert not service["description"].endswith("\n")


def test_prefetch_is_derived_from_the_rules(client, knowledge):
    service = next(s for s in client.get("/cds-services").get_json()["services"]
                   if s["id"] == "spasm-cramps-patient-view")
    prefetch = service["prefetch"]
    assert prefetch["conditions"].startswith("Condition?patient={{context.patientId}}")
    labs = parse_qs(urlsplit(prefetch["labResults"]).query)["code"][0].split(",")
    def flat(criteria):
        for c in criteria:
            yield c
            yield from flat(c.any_of)

    used = {lab for rule in knowledge.services["spasm-cramps-patient-view"].rules
            for c in flat(rule.include + rule.exclude) if c.kind in ("lab", "missing-lab") for lab in c.concepts}
    # a lab corrected by another (calcium by albumin) brings the other along
    used |= {knowledge.concepts[lab].lab.correction.by for lab in set(used) if knowledge.concepts[lab].lab.correction}
    expected = {f"{knowledge.systems['loinc'][0]}|{code}"
                for lab in used for code in knowledge.concepts[lab].codes["loinc"]}
    assert set(labs) == expected
    # every template only uses tokens a CDS Hooks 2.0 client can fill
    for template in prefetch.values():
        assert "{{context.patientId}}" in template
        assert "today()" not in template


def test_discovery_entries_have_no_empty_fields(client):
    for service in client.get("/cds-services").get_json()["services"]:
        for key, value in service.items():
            assert value not in (None, "", [], {}), key


def test_discovery_advertises_the_spec_and_hook_versions_of_cds_hooks_3(client):
    """CDS Hooks 3.0 discovery fields, from cards/services.yaml: `version` (the spec implemented) and `hookVersion`
    (the hook definition implemented); 2.0 clients ignore them."""
    services = client.get("/cds-services").get_json()["services"]
    assert {(s["hook"], s["version"], s["hookVersion"]) for s in services} == {
        ("patient-view", "2.0.1", "1.0"), ("order-select", "2.0.1", "1.0"), ("order-sign", "2.0.1", "1.0")}
