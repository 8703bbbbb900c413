"""FHIR reads and searches against the EHR's server: bearer token, timeouts, no redirects, capped paging."""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import FhirError
from ..settings import Settings
from .prefetch import bundle_resources

log = logging.getLogger(__name__)
_MAX_RESOURCES = 5000


class FhirClient:
    """One EHR FHIR base URL and its access token, for the length of one hook call."""

    def __init__(self, base_url: str, access_token: str | None, settings: Settings,
                 session: requests.Session | None = None):
        self.base = base_url.rstrip("/")
        self._origin = _origin(self.base)
        self._timeout = (settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s)
        self._max_pages = settings.fhir_max_pages
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
        while url and pages < self._max_pages:
            body = self._get(url)
            pages += 1
            kind = body.get("resourceType")
            if kind == "OperationOutcome":
                raise FhirError("the server answered with an OperationOutcome")
            if kind != "Bundle":
                return [body]
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
        try:
            response = self._session.get(url, headers=self._headers, timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise FhirError(f"{type(exc).__name__} calling the FHIR server") from None
        if response.status_code != 200:
            raise FhirError(f"the FHIR server answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise FhirError("the FHIR server answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise FhirError("the FHIR server answered with JSON that is not a resource")
        return body


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
