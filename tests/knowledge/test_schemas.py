"""Every JSON Schema is a valid draft 2020-12 schema, and every YAML file in cards/ and mappings/ passes its own."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from cds_service.knowledge.loader import CONCEPT_DOMAINS, schema_problems
from cds_service.schemas import SCHEMA_DIR, schema
from tests.conftest import REPO

SCHEMAS = sorted(SCHEMA_DIR.glob("*.schema.json"))
KNOWLEDGE_FILES = sorted(p.relative_to(REPO).as_posix() for folder in ("cards", "mappings")
                         for p in (REPO / folder).rglob("*.y*ml"))
SINGLE_FILES = {"cards/sources.yaml": "sources", "cards/policy.yaml": "policy", "cards/services.yaml": "services",
                "mappings/systems.yaml": "systems", "mappings/units.yaml": "units", "mappings/routes.yaml": "routes",
                "mappings/identity-cases.yaml": "identity-cases", "mappings/dosing.yaml": "dosing"}


def schema_for(rel: str) -> str | None:
    """The schema the loader applies to this file, or None if the loader would not read it."""
    parts = rel.split("/")
    if rel in SINGLE_FILES:
        return SINGLE_FILES[rel]
    if parts[0] == "cards" and len(parts) == 3 and parts[2].endswith(".yaml"):
        return "cases" if parts[2].endswith(".cases.yaml") else "rule"
    if parts[0] == "mappings" and parts[1] in CONCEPT_DOMAINS and rel.endswith(".yaml"):
        return "concept"
    return None


@pytest.mark.parametrize("path", SCHEMAS, ids=[p.name for p in SCHEMAS])
def test_schema_is_valid_draft_2020_12(path: Path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:spasm-cds:{path.name.removesuffix('.schema.json')}"


@pytest.mark.parametrize("rel", KNOWLEDGE_FILES)
def test_knowledge_file_validates_against_its_schema(rel: str):
    schema = schema_for(rel)
    assert schema, f"{rel}: the loader reads no YAML here, so nothing would check or use this file"
    doc = yaml.safe_load((REPO / rel).read_text(encoding="utf-8"))
    assert schema_problems(doc, schema, rel) == []


def test_every_kind_of_knowledge_file_is_present():
    kinds = {schema_for(rel) for rel in KNOWLEDGE_FILES}
    assert kinds == {"sources", "policy", "services", "systems", "units", "rule", "cases", "concept", "routes",
                     "identity-cases", "dosing"}


def test_the_services_schema_names_the_hooks_of_the_hook_enum_and_services_read_known_data_kinds(knowledge):
    from cds_service.vocabulary import DataKind, Hook

    services = schema("services")
    assert services["properties"]["services"]["items"]["properties"]["hook"]["enum"] == [str(h) for h in Hook]
    for service in knowledge.services.values():
        assert Hook(service.hook) and all(DataKind(q.kind) for q in service.queries)
        assert service.required_data <= set(DataKind)


def test_a_schema_that_breaks_the_meta_schema_is_refused_when_read(tmp_path, monkeypatch):
    import jsonschema_rs

    import cds_service.schemas as schemas

    (tmp_path / "broken.schema.json").write_text('{"$schema": "https://json-schema.org/draft/2020-12/schema", '
                                                 '"type": 5}', encoding="utf-8")
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    with pytest.raises(jsonschema_rs.ValidationError):
        schemas.schema.__wrapped__("broken")
