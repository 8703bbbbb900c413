"""FHIR reads and searches against the EHR's server: only servers on the allow-list (SSRF guard), bearer token,
timeouts, no redirects, capped paging that stops on a repeated next link."""
from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.utils import requote_uri

from ..errors import FhirError
from ..settings import Settings
from ..telemetry import FHIR_ERRORS, FHIR_LATENCY
from .prefetch import bundle_resources

log = logging.getLogger(__name__)
_MAX_RESOURCES = 5000
_NETLOC = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}|\*))?$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def fhir_server_allowed(url: str, allow_list: str) -> bool:
    """Whether url lies under one of the comma-separated base URLs (`host:*` = any port; `none` = nothing).

    Hosts are compared exactly after strict parsing, so `http://127.0.0.1@elsewhere` or `http://localhost.evil`
    never pass as loopback; a path prefix matches whole segments only."""
    target = _split(url, wildcard_port=False)
    if target is None:
        return False
    for entry in allow_list.split(","):
        allowed = _split(entry.strip(), wildcard_port=True)
        if allowed is None:
            continue
        scheme, host, port, path = allowed
        if (scheme, host) == target[:2] and port in ("*", target[2]) \
                and (target[3] == path or target[3].startswith(path + "/")):
            return True
    return False


def _split(url: str, wildcard_port: bool) -> tuple[str, str, str, str] | None:
    """(scheme, host, port, path without trailing slash), or None if url is not a plain http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    match = _NETLOC.match(parts.netloc)
    if scheme not in _DEFAULT_PORTS or not match or (match["port"] == "*" and not wildcard_port):
        return None
    port = match["port"] or _DEFAULT_PORTS[scheme]
    return scheme, match["host"].lower(), port, parts.path.rstrip("/")


class FhirClient:
    """One EHR FHIR base URL and its access token, for the length of one hook call."""

    def __init__(self, base_url: str, access_token: str | None, settings: Settings,
                 session: requests.Session | None = None, deadline: float | None = None):
        self._allowed = settings.fhir_allowed_urls
        if not fhir_server_allowed(base_url, self._allowed):
            raise FhirError("fhirServer is not on the allow-list (SPASM_CDS_FHIR_ALLOWED_URLS)")
        self.base = base_url.rstrip("/")
        self._origin = _origin(self.base)
        self._timeout = (settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s)
        self._max_pages = settings.fhir_max_pages
        self._deadline = deadline  # time.monotonic() after which no new call starts
        self._session = session or requests.Session()
        self._headers = {"Accept": "application/fhir+json, application/json"}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    def read(self, relative: str) -> dict[str, Any]:
        """GET one resource by relative reference (Type/id). Raises FhirError."""
        body = self._get(self._absolute(relative))
        if "resourceType" not in body or body["resourceType"] in ("Bundle", "OperationOutcome"):
            raise FhirError(f"read of a {relative.split('/')[0]} returned no resource")
        return body

    def search(self, relative_or_next: str) -> list[dict[str, Any]]:
        """All resources of a search (or a read), following `next` links up to fhir_max_pages. Raises FhirError."""
        url: str | None = self._absolute(relative_or_next)
        out: list[dict[str, Any]] = []
        pages = 0
        fetched: set[str] = set()
        while url and pages < self._max_pages:
            # compared as requests will send it, so `|` and `%7C` name the same page
            sent_as = requote_uri(url)
            if sent_as in fetched:
                log.warning("a next link led back to a page already fetched; stopped paging")
                url = None
                break
            fetched.add(sent_as)
            body = self._get(url)
            pages += 1
            kind = body.get("resourceType")
            if kind == "OperationOutcome":
                raise FhirError("the server answered with an OperationOutcome")
            if kind != "Bundle":
                return [body]
            if not isinstance(body.get("entry", []), list) or not isinstance(body.get("link", []), list):
                raise FhirError("the FHIR server answered with a malformed Bundle")
            out.extend(bundle_resources(body))
            if len(out) >= _MAX_RESOURCES:
                log.warning("stopped paging at %d resources", len(out))
                break
            url = next((urljoin(url, link["url"]) for link in body.get("link") or ()
                        if isinstance(link, dict) and link.get("relation") == "next"
                        and isinstance(link.get("url"), str)), None)
            if url and _origin(url) != self._origin:
                log.warning("ignored a next link to another origin")
                url = None
        if url and pages >= self._max_pages:
            log.info("stopped paging after %d pages", pages)
        return out

    def _absolute(self, relative: str) -> str:
        if relative.startswith(("http://", "https://")):
            if _origin(relative) != self._origin:
                raise FhirError("refused a URL on another origin than fhirServer")
            return relative
        return f"{self.base}/{relative.lstrip('/')}"

    def _get(self, url: str) -> dict[str, Any]:
        if not fhir_server_allowed(url, self._allowed):
            raise FhirError("refused a URL off the fhirServer allow-list")
        timeout = self._timeout
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise _failed("deadline", "the time budget was spent before this call")
            timeout = (min(timeout[0], left), min(timeout[1], left))
        started = time.perf_counter()
        try:
            response = self._session.get(url, headers=self._headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            raise _failed("timeout", "the FHIR server did not answer in time") from None
        except requests.RequestException as exc:
            raise _failed("connection", f"{type(exc).__name__} calling the FHIR server") from None
        finally:
            FHIR_LATENCY.observe(time.perf_counter() - started)
        if response.status_code != 200:
            raise _failed(f"http-{response.status_code // 100}xx", f"the FHIR server answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise _failed("not-json", "the FHIR server answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise _failed("not-a-resource", "the FHIR server answered with JSON that is not a resource")
        return body


def _failed(reason: str, message: str) -> FhirError:
    """A FhirError, counted by reason."""
    FHIR_ERRORS.labels(reason=reason).inc()
    return FhirError(message)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
