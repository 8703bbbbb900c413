"""jsonschema validators for the components.schemas of the shared CDS Hooks OpenAPI 3.0 file (CdsRequest,
CdsResponse, Card, ...). OpenAPI 3.0 schemas are close to JSON Schema draft 4, so they are checked as draft 4;
OpenAPI-only keywords (example, nullable) are ignored, and `format: uuid` is checked."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from tests.conftest import SHARED

OPENAPI_PATH = Path(SHARED) / "cds-hooks-api" / "openapi-3.0-cds-hooks-1.1.yaml"
_DOCUMENT_URI = "urn:cds-hooks:openapi"


@cache
def _registry() -> Registry:
    """The whole OpenAPI document as one draft-4 resource, so `#/components/schemas/...` refs resolve in it."""
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return Registry().with_resource(_DOCUMENT_URI, DRAFT4.create_resource(document))


@cache
def cds_validator(name: str) -> Draft4Validator:
    """A validator for components.schemas[name] of the shared OpenAPI file; KeyError if there is no such schema."""
    schemas = _registry().contents(_DOCUMENT_URI)["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"{OPENAPI_PATH.name} has no components.schemas.{name}; it has {sorted(schemas)}")
    return Draft4Validator({"$ref": f"{_DOCUMENT_URI}#/components/schemas/{name}"}, registry=_registry(),
                           format_checker=FormatChecker())


def schema_errors(name: str, instance: object, limit: int = 5) -> list[str]:
    """The first `limit` violations of components.schemas[name] by instance, as 'path: message' lines."""
    errors = sorted(cds_validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:300]}" for e in errors[:limit]]
