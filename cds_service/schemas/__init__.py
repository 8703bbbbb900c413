"""Every JSON Schema of the service (knowledge files, request bodies, trusted issuers) and their compiled
validators: "what does a valid X look like?" has one answer, and the request path reads it from here, never from
the knowledge loader. The criterion part of rule.schema.json is written by `spasm-cds docs` from the criterion
registry (evaluate/criteria.py)."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent


@cache
def schema(name: str) -> dict[str, Any]:
    """schemas/<name>.schema.json as written (its patterns in JSON Schema's ECMA-262 dialect), checked against the
    JSON Schema meta-schema by jsonschema-rs (in milliseconds, where python-jsonschema took a third of a second for
    all of them at every start); a broken schema raises jsonschema_rs.ValidationError."""
    doc = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema_rs.validator_for(doc)
    return doc


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator for schemas/<name>.schema.json, its patterns translated for Python's re (python_pattern)."""
    return Draft202012Validator(_with_python_patterns(schema(name)))


def python_pattern(pattern: str) -> str:
    """An ECMA-262 pattern as Python's re reads it the same way: a `$` outside a character class becomes `\\Z`.
    In ECMA-262 (and jsonschema-rs) `$` matches only at the end, but re.search lets it match before a final
    newline, so "p1\\n" would pass `^[a-z0-9]+$` here and fail in every other JSON Schema validator."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append("\\Z" if char == "$" and not in_class else char)
        i += 1
    return "".join(out)


def _with_python_patterns(node: Any) -> Any:
    if isinstance(node, list):
        return [_with_python_patterns(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = python_pattern(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {python_pattern(k): _with_python_patterns(v) for k, v in value.items()}
        else:
            out[key] = _with_python_patterns(value)
    return out


@cache
def fast_validator(name: str) -> jsonschema_rs.Validator:
    """The same schema compiled by jsonschema-rs (ECMA-262 patterns natively): a valid document passes in
    microseconds instead of milliseconds; only an invalid one goes on to the python-jsonschema validator, whose
    errors name the field."""
    return jsonschema_rs.validator_for(schema(name))


def schema_problems(doc: Any, name: str, where: str, one_of: str = "") -> list[str]:
    """Every schema violation of doc, as 'file: path: message' lines sorted by path; `one_of` is what to say of an
    object that matches none of a oneOf's shapes (the schema's own message lists them all)."""
    try:
        if fast_validator(name).is_valid(doc):
            return []
    except (ValueError, TypeError):  # a value JSON has no type for (a YAML date): the reference validator decides
        pass
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{where}: {_path(e.absolute_path) or '(top)'}: {_explain(e, one_of)}" for e in errors]


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _explain(error, one_of: str) -> str:
    if error.validator == "required":
        return f"add the required field {error.message.split(' ')[0]}"
    if error.validator == "additionalProperties":
        return f"unknown field ({error.message.split('(')[-1].rstrip(')')})"
    if error.validator == "oneOf" and isinstance(error.instance, dict) and one_of:
        return one_of
    return error.message


