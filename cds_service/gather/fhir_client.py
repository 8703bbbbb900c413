"""FHIR reads and searches against the EHR's server: only URLs under the call's fhirServer and on the allow-list
(SSRF guard, after normalising), bearer token, timeouts, no redirects, answers read as a stream and capped in bytes,
capped paging that stops on a repeated next link, and every socket cut when the call's time budget is spent."""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import weakref
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri
from urllib3 import PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import FhirError
from ..settings import Settings
from ..telemetry import FHIR_ERRORS, FHIR_LATENCY, FHIR_OVER_CAP
from .fhir_urls import fhir_server_allowed, normalised_url, under_base
from .prefetch import bundle_resources

log = logging.getLogger(__name__)
_MAX_RESOURCES = 5000
_CHUNK_BYTES = 65_536
_current = threading.local()  # the client whose request this thread is making, for _WatchedConnection


class FhirClient:
    """One EHR FHIR base URL and its access token, for the length of one hook call. close() cuts every connection
    it opened, so a server that trickles its answer holds no thread past the moment its call gives up."""

    def __init__(self, base_url: str, access_token: str | None, settings: Settings,
                 session: requests.Session | None = None, deadline: float | None = None):
        self._allowed = settings.effective_fhir_allowed_urls
        self._own_port = settings.port
        normal = normalised_url(base_url)
        if normal is None or not fhir_server_allowed(normal, self._allowed, self._own_port):
            raise FhirError("fhirServer is not on the allow-list (SPASM_CDS_FHIR_ALLOWED_URLS)")
        self.base = normal.split("?")[0].rstrip("/")
        self._timeout = (settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s)
        self._max_pages = settings.fhir_max_pages
        self._max_answer_bytes = settings.fhir_max_answer_bytes
        self._bytes_left = settings.fhir_max_call_bytes  # shared by the call's parallel fetches
        self._deadline = deadline  # time.monotonic() after which no new call starts and reads stop
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        # the duplicates are closed with the client at the latest, should close() never be called
        self._cut_all = weakref.finalize(self, _cut_all, self._sockets, self._lock)
        self._closed = False
        self._session = session or requests.Session()
        adapter = _WatchedAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._headers = {"Accept": "application/fhir+json, application/json"}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    def read(self, relative: str) -> dict[str, Any]:
        """GET one resource by relative reference (Type/id). Raises FhirError."""
        body = self._get(self._absolute(relative))
        if "resourceType" not in body or body["resourceType"] in ("Bundle", "OperationOutcome"):
            raise FhirError(f"read of a {relative.split('/')[0][:40]} returned no resource")
        return body

    def search(self, relative_or_next: str) -> list[dict[str, Any]]:
        """All resources of a search (or a read), following `next` links up to fhir_max_pages. Raises FhirError."""
        return self.search_pages(relative_or_next)[0]

    def search_pages(self, relative_or_next: str) -> tuple[list[dict[str, Any]], bool]:
        """The resources of a search (or a read), following `next` links up to fhir_max_pages, and whether they are
        all of them: False when paging stopped with pages left (the page or resource cap, or a next link outside
        fhirServer), so that the caller treats what is missing as unknown. Raises FhirError."""
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
                return [body], True
            if not isinstance(body.get("entry", []), list) or not isinstance(body.get("link", []), list):
                raise FhirError("the FHIR server answered with a malformed Bundle")
            out.extend(bundle_resources(body))
            if len(out) >= _MAX_RESOURCES:
                log.warning("stopped paging at %d resources; the rest is unknown", len(out))
                return out, False
            url = next((urljoin(url, link["url"]) for link in body.get("link") or ()
                        if isinstance(link, dict) and link.get("relation") == "next"
                        and isinstance(link.get("url"), str)), None)
            if url and not self._under_base(url):
                log.warning("ignored a next link outside fhirServer; the rest is unknown")
                return out, False
        complete = True
        if url and pages >= self._max_pages:
            log.info("stopped paging after %d pages (SPASM_CDS_FHIR_MAX_PAGES); the rest is unknown", pages)
            complete = False
        return out, complete

    def close(self) -> None:
        """Cut every connection this client opened (a fetch still reading fails at once) and refuse new ones."""
        with self._lock:
            self._closed = True
        self._cut_all()
        self._session.close()

    def _absolute(self, relative: str) -> str:
        url = relative if relative.startswith(("http://", "https://")) else f"{self.base}/{relative.lstrip('/')}"
        if not self._under_base(url):
            raise FhirError("refused a URL on another origin than fhirServer, or outside its path")
        return url

    def _under_base(self, url: str) -> bool:
        normal = normalised_url(url)
        return normal is not None and under_base(normal, self.base)

    def _get(self, url: str) -> dict[str, Any]:
        normal = normalised_url(url)
        if normal is None or not under_base(normal, self.base) \
                or not fhir_server_allowed(normal, self._allowed, self._own_port):
            raise FhirError("refused a URL off the fhirServer allow-list or outside fhirServer")
        timeout = self._timeout
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0 or self._closed:
                raise _failed("deadline", "the time budget was spent before this call")
            timeout = (min(timeout[0], left), min(timeout[1], left))
        started = time.perf_counter()
        _current.client = self
        try:
            with self._session.get(normal, headers=self._headers, timeout=timeout, allow_redirects=False,
                                   stream=True) as response:
                if response.status_code != 200:
                    raise _failed(f"http-{response.status_code // 100}xx",
                                  f"the FHIR server answered HTTP {response.status_code}")
                data = self._body(response)
        except requests.Timeout:
            raise _failed("timeout", "the FHIR server did not answer in time") from None
        except requests.RequestException as exc:
            if self._spent():
                raise _failed("deadline", "the time budget was spent while the FHIR server answered") from None
            raise _failed("connection", f"{type(exc).__name__} calling the FHIR server") from None
        finally:
            _current.client = None
            FHIR_LATENCY.observe(time.perf_counter() - started)
        try:
            body = json.loads(data)
        except ValueError:
            raise _failed("not-json", "the FHIR server answered with something that is not JSON") from None
        if not isinstance(body, dict):
            raise _failed("not-a-resource", "the FHIR server answered with JSON that is not a resource")
        return body

    def _body(self, response: requests.Response) -> bytearray:
        """The answer's bytes, read in chunks: refused past fhir_max_answer_bytes, the call's fhir_max_call_bytes
        or the time budget (a server trickling bytes is cut by close() at the latest)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_answer_bytes:
            raise _over_cap("answer")
        data = bytearray()
        for chunk in response.iter_content(_CHUNK_BYTES):
            data += chunk
            if len(data) > self._max_answer_bytes:
                raise _over_cap("answer")
            with self._lock:
                self._bytes_left -= len(chunk)
                if self._bytes_left < 0:
                    raise _over_cap("call")
            if self._spent():
                raise _failed("deadline", "the time budget was spent while the FHIR server answered")
        return data

    def _spent(self) -> bool:
        return self._closed or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _watch(self, sock: socket.socket) -> None:
        """Keep a duplicate of a new connection's socket, so close() can shut the connection down from another
        thread, TLS handshake and all (shutdown acts on the connection, not on one descriptor)."""
        duplicate = sock.dup()
        with self._lock:
            if not self._closed:
                self._sockets.append(duplicate)
                return
        _cut(duplicate)

def _cut_all(sockets: list[socket.socket], lock: threading.Lock) -> None:
    with lock:
        taken = list(sockets)
        sockets.clear()
    for sock in taken:
        _cut(sock)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _watched(sock: socket.socket) -> socket.socket:
    """A new connection's socket, watched by the client of this thread's call (if any) so it can be cut."""
    client = getattr(_current, "client", None)
    if client is not None:
        client._watch(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections that register their sockets with the client making the request."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> PoolManager:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is ProxyManager:  # a SOCKS manager keeps its own connection classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def _failed(reason: str, message: str) -> FhirError:
    """A FhirError, counted by reason."""
    FHIR_ERRORS.labels(reason=reason).inc()
    return FhirError(message)


def _over_cap(cap: str) -> FhirError:
    FHIR_OVER_CAP.labels(cap=cap).inc()
    setting = "SPASM_CDS_FHIR_MAX_ANSWER_BYTES" if cap == "answer" else "SPASM_CDS_FHIR_MAX_CALL_BYTES"
    return _failed("too-large", f"the FHIR server's answer passed {setting}; the data is treated as unknown")
