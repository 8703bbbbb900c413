"""FHIR URLs before anything is sent: normalise them the way the server will read them, refuse what cannot be read
one way only, and check them against the allow-list (SSRF guard) and against the call's own fhirServer base."""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_NETLOC = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}|\*))?$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# a path that a server, a proxy or a framework may decode or split differently from us: encoded dot, slash,
# backslash or percent (double encoding), a matrix parameter (`..;/` passes as `..` on some Java servers),
# a backslash, and anything below or at space
_AMBIGUOUS_PATH = re.compile(r"%(2e|2f|5c|25|00)|[;\\\x00-\x20\x7f]", re.IGNORECASE)
_OWN_PORT_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def normalised_url(url: str) -> str | None:
    """url as the server will read it: scheme and host lower-cased, dot segments resolved, repeated slashes
    collapsed, fragment dropped; None when it is not a plain http(s) URL or its path could be read another way."""
    if not isinstance(url, str) or "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    match = _NETLOC.match(parts.netloc)
    if scheme not in _DEFAULT_PORTS or not match or match["port"] == "*" or _AMBIGUOUS_PATH.search(parts.path):
        return None
    return urlunsplit((scheme, parts.netloc.lower(), _resolved_path(parts.path), parts.query, ""))


def _resolved_path(path: str) -> str:
    """RFC 3986 remove_dot_segments, with empty segments (`//`) dropped; `..` never climbs above the root."""
    out: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    trailing = "/" if segments[-1] in ("", ".", "..") and out else ""
    return "/" + "/".join(out) + trailing


def under_base(url: str, base: str) -> bool:
    """Whether the normalised url lies under the normalised base URL: same origin, whole-segment path prefix."""
    target, root = _split(url, wildcard_port=False), _split(base, wildcard_port=False)
    return target is not None and root is not None and target[:3] == root[:3] and _path_under(target[3], root[3])


def fhir_server_allowed(url: str, allow_list: str, own_port: int | None = None) -> bool:
    """Whether url, once normalised, lies under one of the comma-separated base URLs (`host:*` = any port but
    own_port on loopback, so the service never calls itself; `none` = nothing).

    Hosts are compared exactly after strict parsing, so `http://127.0.0.1@elsewhere` or `http://localhost.evil`
    never pass as loopback; a path prefix matches whole segments only, after dot segments are resolved."""
    normal = normalised_url(url)
    target = _split(normal, wildcard_port=False) if normal else None
    if target is None:
        return False
    for entry in allow_list.split(","):
        allowed = _split(entry.strip(), wildcard_port=True)
        if allowed is None:
            continue
        scheme, host, port, path = allowed
        if port == "*" and own_port is not None and host in _OWN_PORT_HOSTS and target[2] == str(own_port):
            continue
        if (scheme, host) == target[:2] and port in ("*", target[2]) and _path_under(target[3], path):
            return True
    return False


def _path_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _split(url: str, wildcard_port: bool) -> tuple[str, str, str, str] | None:
    """(scheme, host, port, path without trailing slash), or None if url is not a plain http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    match = _NETLOC.match(parts.netloc)
    if scheme not in _DEFAULT_PORTS or not match or (match["port"] == "*" and not wildcard_port):
        return None
    port = match["port"] or _DEFAULT_PORTS[scheme]
    return scheme, match["host"].lower(), port, parts.path.rstrip("/")
