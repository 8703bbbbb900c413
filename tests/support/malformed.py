"""A corpus of malformed requests to the service: bad JSON, wrong types, missing context, huge strings, deep
nesting, the wrong hook, the wrong content type, bytes that are not UTF-8, wrong methods and unknown paths.
Every one must be answered with a 4xx OperationOutcome (MALFORMED); JUNK_IN_RESOURCES holds well-formed requests
whose prefetched resources are junk, which must never give a 5xx."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SERVICE = "/cds-services/spasm-cramps-patient-view"
JSON = "application/json"
WRONG_TYPES: list[Any] = [None, 0, -1.5, True, [], {}, "x", ["x"], {"a": 1}]


@dataclass(frozen=True)
class Malformed:
    """One request: what it is named in test ids, and what goes on the wire."""

    name: str
    body: bytes
    content_type: str | None = JSON
    method: str = "POST"
    path: str = SERVICE


def valid_body() -> dict[str, Any]:
    """A request the service answers with 200 (the problem list is prefetched, empty)."""
    return {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = valid_body()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _removed(path: tuple[str, ...]) -> dict[str, Any]:
    doc = valid_body()
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return doc


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _bad_json() -> Iterator[Malformed]:
    text = json.dumps(valid_body())
    for cut in range(1, len(text), max(1, len(text) // 40)):
        yield Malformed(f"truncated-at-{cut}", text[:cut].encode())
    garbage = {"empty": b"", "whitespace": b"   \n", "open-brace": b"{", "close-brace": b"}", "trailing-comma":
               text[:-1].encode() + b",}", "single-quotes": text.replace('"', "'").encode(), "unquoted-keys":
               b'{hook: "patient-view"}', "comment": b"// c\n" + text.encode(), "two-documents":
               text.encode() + text.encode(), "null": b"null", "true": b"true", "number": b"42", "string":
               b'"patient-view"', "array": b"[]", "array-of-body": b"[" + text.encode() + b"]", "nan": b"NaN",
               "xml": b"<hook>patient-view</hook>", "form": b"hook=patient-view&context=x",
               "nul-bytes": b"\x00" * 64, "control-char-in-string": text.replace("p1", "p\x011").encode()}
    for name, body in garbage.items():
        yield Malformed(f"bad-json-{name}", body)


OPTIONAL = {("prefetch",), ("fhirServer",), ("fhirAuthorization",), ("context", "encounterId")}


def _wrong_types() -> Iterator[Malformed]:
    fields = [("hook",), ("hookInstance",), ("context",), ("prefetch",), ("fhirServer",), ("fhirAuthorization",),
              ("context", "patientId"), ("context", "userId"), ("context", "encounterId"),
              ("prefetch", "conditions")]
    strings = {("hook",), ("hookInstance",), ("fhirServer",), ("context", "patientId"), ("context", "userId"),
               ("context", "encounterId")}
    for path in fields:
        for value in WRONG_TYPES:
            if path in strings and isinstance(value, str):
                continue  # the right type (bad string values are below)
            if path == ("prefetch",) and value == {}:
                continue  # an empty prefetch is well-formed (and gives 412, tested elsewhere)
            if path == ("prefetch", "conditions") and value is None:
                continue  # null means "searched, nothing found"
            if path in OPTIONAL and value is None:
                continue  # an optional field may be null (tests/integration/test_lenient_requests.py)
            yield Malformed(f"wrong-type-{'.'.join(path)}-{type(value).__name__}-{json.dumps(value)[:8]}",
                            _dump(_changed(path, value)))


def _missing() -> Iterator[Malformed]:
    for path in [("hook",), ("hookInstance",), ("context",), ("context", "patientId"), ("context", "userId")]:
        yield Malformed(f"missing-{'.'.join(path)}", _dump(_removed(path)))
    yield Malformed("missing-everything", b"{}")
    yield Malformed("missing-required-prefetch-and-no-fhir-server", _dump(_removed(("prefetch", "conditions"))))
    auth = {"access_token": "t", "token_type": "Bearer", "expires_in": 60, "scope": "s", "subject": "c"}
    yield Malformed("fhir-authorization-without-fhir-server", _dump(_changed(("fhirAuthorization",), auth)))
    # only the access token is needed; the other fields may be missing (tests/integration/test_lenient_requests.py)
    doc = _changed(("fhirAuthorization",), {k: v for k, v in auth.items() if k != "access_token"})
    doc["fhirServer"] = "http://127.0.0.1:9/fhir"
    yield Malformed("fhir-authorization-missing-access_token", _dump(doc))
    for token_type in ("Basic", "MAC", ""):
        doc = _changed(("fhirAuthorization",), {**auth, "token_type": token_type})
        doc["fhirServer"] = "http://127.0.0.1:9/fhir"
        yield Malformed(f"fhir-authorization-token-type-{token_type or 'empty'}", _dump(doc))


def _bad_values() -> Iterator[Malformed]:
    values = {("hookInstance",): ["", "x" * 201], ("context", "patientId"): ["", "a/b", "p 1", "x" * 65, "é"],
              ("context", "userId"): ["", "Practitioner", "Practitioner/", "/1", "Practitioner/a b"],
              ("fhirServer",): ["", "not a url", "ftp://127.0.0.1/fhir", "http://", "http://a b/"],
              ("hook",): ["", "order-sign", "order-select", "medication-prescribe", "PATIENT-VIEW", "patient-view "]}
    for path, options in values.items():
        for i, value in enumerate(options):
            yield Malformed(f"bad-value-{'.'.join(path)}-{i}", _dump(_changed(path, value)))
    draft = _changed(("hook",), "order-select")
    draft["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": []}
    draft["context"]["selections"] = []
    yield Malformed("wrong-hook-order-select-with-draft-orders", _dump(draft))


def _huge() -> Iterator[Malformed]:
    for path in [("hook",), ("hookInstance",), ("context", "patientId"), ("context", "userId")]:
        yield Malformed(f"huge-string-{'.'.join(path)}", _dump(_changed(path, "x" * 500_000)))
    yield Malformed("huge-fhir-server-with-a-space", _dump(_changed(("fhirServer",), "http://a" + "a" * 500_000 + " ")))
    yield Malformed("body-over-the-cap", _dump(_changed(("extension",), {"pad": "x" * 1_100_000})))
    many = {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": {"resourceType": "Condition"}} for _ in range(6000)]}
    yield Malformed("prefetch-over-the-resource-cap", _dump(_changed(("prefetch", "conditions"), many)))
    keys = {f"key{i}": {"resourceType": "Basic"} for i in range(6000)}
    yield Malformed("prefetch-over-the-resource-cap-in-keys", _dump(_changed(("prefetch",), keys)))


def _deep() -> Iterator[Malformed]:
    for depth in (50, 500, 900, 5_000, 100_000):
        yield Malformed(f"deep-array-{depth}", _nested(depth).encode())
        yield Malformed(f"deep-hook-{depth}", f'{{"hook": {_nested(depth)}, "hookInstance": "x", "context": {{}}}}'
                        .encode())
        context = '{"userId": "Practitioner/1", "patientId": ' + _nested(depth, '"p1"') + "}"
        doc = json.dumps(valid_body())
        yield Malformed(f"deep-patient-id-{depth}", doc.replace(json.dumps(valid_body()["context"]), context).encode())
        objects = '{"a": ' * depth + "1" + "}" * depth
        yield Malformed(f"deep-object-as-context-{depth}",
                        doc.replace(json.dumps(valid_body()["context"]), objects).encode())


def _content_types() -> Iterator[Malformed]:
    body = _dump(valid_body())
    for kind in [None, "text/plain", "text/html", "application/xml", "application/octet-stream",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json", "application/jsonx",
                 "application/javascript", "image/png", "*/*"]:
        yield Malformed(f"content-type-{kind or 'none'}", body, content_type=kind)


def _not_utf8() -> Iterator[Malformed]:
    text = json.dumps(valid_body())
    for name, raw in {"latin-1-patient-id": text.replace("p1", "p\u00e91").encode("latin-1"),
                      "lone-ff": text.replace("p1", "p1").encode()[:-2] + b"\xff}",
                      "bad-continuation": text.encode().replace(b"p1", b"p\xc3\x281"),
                      "overlong-slash": text.encode().replace(b"p1", b"p\xc0\xaf1"),
                      "cp1252-quotes": text.replace('"patient-view"', "\u201cpatient-view\u201d").encode("cp1252"),
                      "lone-surrogate-escape": text.replace("p1", "\\ud800").encode(),
                      "surrogate-bytes": text.encode().replace(b"p1", b"\xed\xa0\x80")}.items():
        yield Malformed(f"not-utf8-{name}", raw)


def _routing() -> Iterator[Malformed]:
    body = _dump(valid_body())
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        yield Malformed(f"method-{method}-on-service", body if method != "GET" else b"", method=method)
    for method in ("POST", "PUT", "DELETE"):
        yield Malformed(f"method-{method}-on-discovery", body, method=method, path="/cds-services")
    for i, path in enumerate(["/cds-services/no-such-service", "/cds-services/" + "x" * 3000,
                              "/cds-services/%00", "/cds-services/..%2f..%2fetc",
                              "/cds-services/spasm-cramps-patient-view/x/y",
                              "/cds-services/%F0%9F%92%A9", "/nowhere", "/cds-services/spasm-cramps-patient-view%20"]):
        yield Malformed(f"unknown-path-{i}", body, path=path)


def _corpus() -> list[Malformed]:
    items = [*_bad_json(), *_wrong_types(), *_missing(), *_bad_values(), *_huge(), *_deep(), *_content_types(),
             *_not_utf8(), *_routing()]
    names = [m.name for m in items]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return items


MALFORMED = _corpus()


@dataclass(frozen=True)
class Junk:
    """A junk value put into one field of one prefetched resource (or into a Bundle's entry or link)."""

    name: str
    kind: str
    field: str
    value: Any


_JUNK_FIELDS = {"Patient": ["birthDate", "gender", "deceasedBoolean"],
                "Condition": ["code", "clinicalStatus", "verificationStatus", "onsetDateTime", "category", "subject"],
                "Observation": ["code", "valueQuantity", "effectiveDateTime", "status", "referenceRange",
                                "interpretation", "valueString"],
                "MedicationRequest": ["medicationCodeableConcept", "medicationReference", "status", "authoredOn"],
                "MedicationStatement": ["medicationCodeableConcept", "status", "effectivePeriod"]}
_KEY_OF = {"Patient": "patient", "Condition": "conditions", "Observation": "labResults",
           "MedicationRequest": "medicationRequests", "MedicationStatement": "medicationStatements"}
_JUNK_VALUES: list[Any] = [*WRONG_TYPES, {"coding": 5}, {"coding": [5]}, {"coding": [{"code": 5, "system": []}]},
                           {"coding": [{"code": "x", "system": {"a": 1}}]},
                           {"coding": [{"code": "x", "system": ["a"]}]},
                           {"value": "x", "unit": 5}, {"start": 5}]
_BUNDLE_JUNK: list[Any] = [5, "abc", {"resource": {}}, [1, 2], [{"resource": [1]}], [{"resource": None}]]
JUNK_IN_RESOURCES = [Junk(f"{kind}.{field}-{i}-{json.dumps(value)[:14]}", kind, field, value)
                     for kind, fields in _JUNK_FIELDS.items() for field in fields
                     for i, value in enumerate(_JUNK_VALUES)]
JUNK_IN_RESOURCES += [Junk(f"Bundle.{field}-{i}-{json.dumps(value)[:14]}", "Bundle", field, value)
                      for field in ("entry", "link") for i, value in enumerate(_BUNDLE_JUNK)]


def junk_request(junk: Junk, cramp: dict[str, Any]) -> dict[str, Any]:
    """A well-formed patient-view request with the cramp Condition prefetched and the junk put in place."""
    doc = valid_body()
    doc["prefetch"]["conditions"]["entry"] = [{"resource": cramp}]
    if junk.kind == "Bundle":
        doc["prefetch"]["labResults"] = {"resourceType": "Bundle", "type": "searchset", junk.field: junk.value}
        return doc
    resource = {"resourceType": junk.kind, "id": "r1", "subject": {"reference": "Patient/p1"},
                junk.field: copy.deepcopy(junk.value)}
    key = _KEY_OF[junk.kind]
    if junk.kind == "Patient":
        doc["prefetch"][key] = resource
    elif junk.kind == "Condition":
        doc["prefetch"][key]["entry"].append({"resource": resource})
    else:
        doc["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource}]}
    return doc
