"""One error shape: every non-2xx body is a FHIR OperationOutcome made by to_operation_outcome (401: empty body)."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

_HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 413: "too-long",
                     415: "not-supported", 412: "processing", 503: "transient"}


DEEP_NESTING = 500  # levels; FHIR resources in a CDS Hooks body nest a few dozen at most


class ServiceError(Exception):
    """Base of the errors a request can end in; carries the HTTP status and FHIR issue code."""

    status = 500
    issue_code = "exception"

    def __init__(self, diagnostics: str):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics

    def headers(self) -> dict[str, str]:
        """Headers the response carries besides the body (none by default)."""
        return {}


class InvalidRequest(ServiceError):
    """The body is not JSON, or not a valid CDS Hooks request for this service."""

    status, issue_code = 400, "invalid"


class UnknownService(ServiceError):
    """No service (or knowledge page) with that id exists."""

    status, issue_code = 404, "not-found"


class UnsupportedMediaType(ServiceError):
    """A POST whose Content-Type is not JSON."""

    status, issue_code = 415, "not-supported"


class PayloadTooLarge(ServiceError):
    """The body is larger than max_body_bytes."""

    status, issue_code = 413, "too-long"


class DataUnavailable(ServiceError):
    """Data the service cannot do without is neither prefetched nor fetchable (CDS Hooks: 412)."""

    status, issue_code = 412, "processing"


class StoreUnavailable(ServiceError):
    """The service database could not take a write the answer depends on (feedback, or replay protection when the
    worker's in-process memory is full); the client may retry, after Retry-After seconds."""

    status, issue_code = 503, "transient"
    retry_after_s = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Unauthorized(ServiceError):
    """The caller's JWT failed verification; answered with an empty 401 and an RFC 6750 WWW-Authenticate header."""

    status, issue_code = 401, "login"

    def __init__(self, diagnostics: str, www_authenticate: str = 'Bearer realm="cds-services"'):
        super().__init__(diagnostics)
        self.www_authenticate = www_authenticate

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.www_authenticate}


class KnowledgeError(Exception):
    """Start-up only: the knowledge folders are broken; carries every problem found."""

    def __init__(self, problems: list[str]):
        listed = "\n  ".join(problems)
        super().__init__(f"knowledge has {len(problems)} problem(s):\n  {listed}")
        self.problems = problems

    def __reduce__(self) -> tuple[type[KnowledgeError], tuple[list[str]]]:
        """Pickled with its problems (a worker process that cannot load the knowledge reports it to the parent)."""
        return (KnowledgeError, (self.problems,))


class FhirError(Exception):
    """A call to the EHR's FHIR server failed; raised in gather/ and never let out of it."""


class MemoryUnavailable(Exception):
    """The card memory's database failed; raised in state/suppression.py, caught in screen.py (cards are then
    shown without de-duplication or suppression, or not recorded). `busy`: another writer held the lock."""

    def __init__(self, message: str, busy: bool = False):
        super().__init__(message)
        self.busy = busy


def to_operation_outcome(status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> Response:
    """The one function that builds an error response."""
    if status == 401:
        return Response(status=401, headers=headers)
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/fhir+json"
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Route service errors, routing errors and anything unexpected through to_operation_outcome."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        log.info("request failed: %s %s", exc.status, exc.issue_code)
        return to_operation_outcome(exc.status, exc.issue_code, exc.diagnostics, exc.headers())

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return to_operation_outcome(status, _HTTP_ISSUE_CODES.get(status, "exception"),
                                    exc.description or exc.name)

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError) -> Response:
        # orjson parses nesting up to 1,024 levels, past Python's recursion limit: a value nested that deep makes
        # any step that walks or prints it (schema messages, facts, terminology) run out of stack
        if _nesting_depth(request.get_json(silent=True)) < DEEP_NESTING:
            return _unexpected(exc)
        log.info("request failed: 400 invalid (nested too deeply)")
        return to_operation_outcome(400, "invalid", f"the body is nested too deeply (over {DEEP_NESTING} levels)")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)  # also when called from another handler
        return to_operation_outcome(500, "exception", "internal error; see the service log")


def _nesting_depth(doc: object) -> int:
    """How many arrays and objects deep doc nests (without recursion)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
