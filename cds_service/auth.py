"""STEP 2: verify the EHR's JWT (CDS Hooks 2.0 security): ES384 or RS384 from a trusted issuer's keys, aud = the URL
called (SPASM_CDS_PUBLIC_URL plus the path), exp/iat/nbf, and a jti never accepted twice. Any failure is Unauthorized
(an empty 401 with an RFC 6750 WWW-Authenticate header), counted by reason; the log names the reason code and the iss
and aud received, never the token."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import StoreUnavailable, Unauthorized
from .schemas import schema_problems
from .settings import Settings
from .state import Database
from .state.replay import JtiStore, ReplayMemoryFull
from .telemetry import JWT_FAILURES

log = logging.getLogger(__name__)

ALGORITHMS = ("ES384", "RS384")
_MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 512 * 1024
_MAX_JTI_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MIN_RSA_BITS = 2048
_MAX_LOGGED_CHARS = 200
# every reason a refusal can give: the metric's label values and the log's codes stay a closed set
REASONS = frozenset({
    "no_token", "not_bearer", "token_too_large", "malformed", "alg_not_allowed", "no_kid", "no_iss", "untrusted_iss",
    "jku_not_allowed", "jwks_unavailable", "unknown_kid", "key_not_for_alg", "no_aud", "no_exp", "no_iat", "no_jti",
    "expired", "not_yet_valid", "wrong_aud", "wrong_iss", "bad_iat", "bad_jti", "bad_signature", "bad_exp",
    "lifetime_too_long", "bad_tenant", "tenant_not_allowed", "replayed_jti", "invalid"})
# RFC 6750 section 3.1: no error code when no bearer token was sent, invalid_request when the header is malformed
_NO_CREDENTIALS = frozenset({"no_token", "not_bearer"})
_INVALID_REQUEST = frozenset({"token_too_large"})
REALM = "cds-services"


@dataclass(frozen=True)
class TrustedIssuer:
    """One issuer (iss) and where its keys come from (a JWKS file, a JWKS URL, or only the jku URLs listed for it),
    the aud values it may send besides the URL called, and the algorithms it may sign with."""

    issuer: str
    jwks_file: Path | None
    jku: tuple[str, ...]
    tenants: frozenset[str] | None
    jwks_url: str | None = None
    audiences: tuple[str, ...] = ()
    algorithms: frozenset[str] | None = None  # None: every algorithm the service accepts (ALGORITHMS)


@dataclass(frozen=True)
class Caller:
    """What a verified token says about its caller (safe to log: no token, no patient data)."""

    issuer: str
    tenant: str | None
    jti: str


class _Refused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def load_trusted_issuers(path: str | Path) -> dict[str, TrustedIssuer]:
    """Read SPASM_CDS_TRUSTED_ISSUERS (YAML or JSON). Raises ValueError naming every problem."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"SPASM_CDS_TRUSTED_ISSUERS: cannot read {path}: {exc}") from None
    problems = schema_problems(doc, "trusted-issuers", str(path))
    if problems:
        raise ValueError("\n  ".join(["SPASM_CDS_TRUSTED_ISSUERS is not valid:", *problems]))
    issuers = {}
    for iss, entry in doc["issuers"].items():
        jwks_file = (path.parent / entry["jwks_file"]).resolve() if "jwks_file" in entry else None
        if jwks_file is not None:
            try:
                _read_jwks_file(jwks_file)
            except _Refused:
                problems.append(f"{path}: issuers.{iss}.jwks_file: {jwks_file} is not a readable JWK Set "
                                "with at least one key that has a kid")
        issuers[iss] = TrustedIssuer(issuer=iss, jwks_file=jwks_file, jku=tuple(entry.get("jku", ())),
                                     tenants=frozenset(entry["tenants"]) if "tenants" in entry else None,
                                     jwks_url=entry.get("jwks_url"), audiences=tuple(entry.get("audiences", ())),
                                     algorithms=frozenset(entry["algorithms"]) if "algorithms" in entry else None)
    if problems:
        raise ValueError("\n  ".join(["SPASM_CDS_TRUSTED_ISSUERS is not valid:", *problems]))
    return issuers


class KeySets:
    """JWK Sets by source (a file path or an allowed jku URL): cached for ttl_s, fetched again on an unknown kid
    at most once per min_refetch_s, so a flood of made-up kids cannot turn into a flood of fetches."""

    def __init__(self, ttl_s: float, min_refetch_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._timeout = (timeout_s, timeout_s)
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def jwk(self, source: str, kid: str) -> dict[str, Any] | None:
        """The JWK with this kid from source, or None. Raises _Refused when the set cannot be had at all."""
        loaded, keys = self._cache.get(source, (float("-inf"), {}))
        age = self._clock() - loaded
        if age > self._ttl_s or (kid not in keys and age >= self._min_refetch_s):
            keys = self._reload(source)
        return keys.get(kid)

    def _reload(self, source: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            stale = self._cache.get(source)
            if stale and self._clock() - stale[0] < self._min_refetch_s:
                return stale[1]  # another thread fetched it while this one waited
            try:
                keys = _read_jwks_file(Path(source)) if "://" not in source else self._fetch(source)
            except _Refused:
                if stale is None:
                    raise
                log.warning("could not refresh a JWK Set; using the copy fetched before")
                # retry after min_refetch_s, not on every request
                self._cache[source] = (self._clock() - self._ttl_s + self._min_refetch_s, stale[1])
                return stale[1]
            self._cache[source] = (self._clock(), keys)
            return keys

    def _fetch(self, url: str) -> dict[str, dict[str, Any]]:
        if self._session is None:
            self._session = requests.Session()
        try:
            with self._session.get(url, timeout=self._timeout, allow_redirects=False, stream=True,
                                   headers={"Accept": "application/json, application/jwk-set+json"}) as response:
                if response.status_code != 200:
                    log.warning("JWK Set fetch answered HTTP %d", response.status_code)
                    raise _Refused("jwks_unavailable")
                raw = response.raw.read(_MAX_JWKS_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            log.warning("JWK Set fetch failed: %s", type(exc).__name__)
            raise _Refused("jwks_unavailable") from None
        if len(raw) > _MAX_JWKS_BYTES:
            raise _Refused("jwks_unavailable")
        return _parse_jwks(raw)


def _read_jwks_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return _parse_jwks(path.read_bytes())
    except OSError:
        raise _Refused("jwks_unavailable") from None


def _parse_jwks(raw: bytes) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise _Refused("jwks_unavailable") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    found = {k["kid"]: k for k in keys or () if isinstance(k, dict) and isinstance(k.get("kid"), str)} \
        if isinstance(keys, list) else {}
    if not found:
        raise _Refused("jwks_unavailable")
    return found


def _public_key(jwk_data: dict[str, Any], alg: str) -> jwt.PyJWK:
    """The JWK as a key for alg; refused unless it is a public signing key of the type and size alg needs."""
    if jwk_data.get("use", "sig") != "sig" or jwk_data.get("alg", alg) != alg:
        raise _Refused("key_not_for_alg")
    try:
        key = jwt.PyJWK(jwk_data, algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _Refused("key_not_for_alg") from None
    if alg == "ES384":
        ok = isinstance(key.key, ec.EllipticCurvePublicKey) and isinstance(key.key.curve, ec.SECP384R1)
    else:
        ok = isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size >= _MIN_RSA_BITS
    if not ok:
        raise _Refused("key_not_for_alg")
    return key


_DECODE_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_aud"),
    (jwt.InvalidIssuerError, "wrong_iss"),
    (jwt.InvalidIssuedAtError, "bad_iat"),
    (jwt.exceptions.InvalidJTIError, "bad_jti"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed"),
    (jwt.InvalidKeyError, "key_not_for_alg"),
)


class Verifier:
    """Checks one Authorization header against the trusted issuers, their keys and the replay store."""

    def __init__(self, issuers: Mapping[str, TrustedIssuer], keysets: KeySets, replay: JtiStore,
                 leeway_s: int, max_lifetime_s: int, clock: Callable[[], float] = time.time):
        self._issuers = dict(issuers)
        self._keysets = keysets
        self._replay = replay
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """The verified caller. Raises Unauthorized (logged and counted with its reason code) on any failure, or
        StoreUnavailable (503) when the replay protection can take no new token (docs/hardening.md)."""
        unverified: dict[str, Any] = {}
        try:
            token = _bearer_token(authorization)
            header, unverified = _unverified_parts(token)
            issuer = self._issuers.get(unverified["iss"])  # a string: _unverified_parts refuses any other
            if issuer is None:
                raise _Refused("untrusted_iss")
            caller = self._check(token, header, issuer, audience)
        except _Refused as refused:
            reason = refused.reason if refused.reason in REASONS else "invalid"
            JWT_FAILURES.labels(reason=reason).inc()
            # iss and aud as received (unverified, so trimmed and escaped); never the token
            log.warning("JWT refused: %s (iss: %s, aud: %s; expected aud: %s)", reason,
                        _loggable(unverified.get("iss")), _loggable(unverified.get("aud")), audience)
            raise Unauthorized(reason, www_authenticate=_challenge(reason)) from None
        except ReplayMemoryFull as exc:
            log.error("JWT not checked: the database is unavailable and %s; answering 503", exc)
            raise StoreUnavailable("the service cannot check tokens for replay now; send the request again "
                                   "shortly") from None
        log.info("JWT accepted from issuer %s", caller.issuer)
        return caller

    def _check(self, token: str, header: dict[str, Any], issuer: TrustedIssuer, audience: str) -> Caller:
        alg = header["alg"]
        if issuer.algorithms is not None and alg not in issuer.algorithms:
            raise _Refused("alg_not_allowed")
        if issuer.jwks_file is not None:
            source = str(issuer.jwks_file)  # keys exchanged out of band: a jku in the token is never fetched
        elif issuer.jwks_url is not None:
            source = issuer.jwks_url  # the issuer's one published JWK Set: a jku in the token is never fetched
        else:
            jku = header.get("jku")
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise _Refused("jku_not_allowed")
            source = jku
        jwk_data = self._keysets.jwk(source, header["kid"])
        if jwk_data is None:
            raise _Refused("unknown_kid")
        key = _public_key(jwk_data, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=[audience, *issuer.audiences],
                                issuer=issuer.issuer,
                                leeway=self._leeway_s,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False,
                                         "enforce_minimum_key_length": True})
        except jwt.MissingRequiredClaimError as exc:
            raise _Refused(f"no_{exc.claim}") from None
        except jwt.PyJWTError as exc:
            reason = next((r for kind, r in _DECODE_REASONS if isinstance(exc, kind)), "invalid")
            raise _Refused(reason) from None
        exp = claims["exp"]
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _Refused("bad_exp")  # PyJWT also takes numeric strings
        if exp - self._clock() > self._max_lifetime_s + self._leeway_s:
            raise _Refused("lifetime_too_long")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise _Refused("bad_tenant")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise _Refused("tenant_not_allowed")
        jti = claims["jti"]
        # control characters are refused: PostgreSQL cannot store NUL, and no issuer needs them in an id
        if not jti or len(jti) > _MAX_JTI_CHARS or _CONTROL.search(jti):
            raise _Refused("bad_jti")
        if not self._replay.first_use(issuer.issuer, jti, int(exp) + self._leeway_s):
            raise _Refused("replayed_jti")
        return Caller(issuer=issuer.issuer, tenant=tenant, jti=jti)


def _challenge(reason: str) -> str:
    """The WWW-Authenticate value of a 401 (RFC 6750): an error code, never the reason itself."""
    if reason in _NO_CREDENTIALS:
        return f'Bearer realm="{REALM}"'
    error = "invalid_request" if reason in _INVALID_REQUEST else "invalid_token"
    return f'Bearer realm="{REALM}", error="{error}"'


def _loggable(value: Any) -> str:
    """A claim received in a refused token, fit for a log line: trimmed, printable ASCII only, or `absent`."""
    if value is None:
        return "absent"
    if isinstance(value, list):
        return "[" + ", ".join(_loggable(v) for v in value[:3]) + (", ..." if len(value) > 3 else "") + "]"
    text = value if isinstance(value, str) else type(value).__name__
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text[:_MAX_LOGGED_CHARS])
    return cleaned + ("..." if len(text) > _MAX_LOGGED_CHARS else "")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise _Refused("no_token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Refused("not_bearer")
    if len(token) > _MAX_TOKEN_CHARS:
        raise _Refused("token_too_large")
    return token


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims read before any check, only to choose the issuer and key; nothing here is trusted."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _Refused("malformed") from None
    if header.get("alg") not in ALGORITHMS:
        raise _Refused("alg_not_allowed")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise _Refused("no_kid")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise _Refused("no_iss")
    return header, claims


def build_verifier(settings: Settings, database: Database) -> Verifier | None:
    """The verifier the settings ask for, or None when SPASM_CDS_AUTH=off (logged as a warning).

    Raises ValueError on a missing or bad SPASM_CDS_PUBLIC_URL with authentication on, or a broken trusted-issuers
    file (Settings has checked SPASM_CDS_AUTH itself)."""
    if not settings.auth_on:
        log.warning("authentication is OFF (SPASM_CDS_AUTH=off): any caller is trusted. Use this for local "
                    "trials only; set SPASM_CDS_AUTH=on and SPASM_CDS_TRUSTED_ISSUERS for any real deployment")
        return None
    check_public_url(settings.public_url)
    issuers = load_trusted_issuers(settings.trusted_issuers) if settings.trusted_issuers else {}
    if not issuers:
        log.warning("authentication is on but no issuer is trusted (SPASM_CDS_TRUSTED_ISSUERS): "
                    "every call to /cds-services will get 401")
    keysets = KeySets(settings.jwks_cache_ttl_s, settings.jwks_min_refetch_s, settings.jwks_timeout_s)
    return Verifier(issuers, keysets, JtiStore(database, max_kept=settings.jti_memory_max), settings.jwt_leeway_s,
                    settings.jwt_max_lifetime_s)


def check_public_url(url: str) -> None:
    """With authentication on, a JWT's aud is compared with SPASM_CDS_PUBLIC_URL, never with a URL built from the
    request's Host header (which the caller chooses, so another service's token would pass). Raises ValueError
    (one line) when it is unset or not an absolute http(s) URL."""
    if not url.strip():
        raise ValueError("SPASM_CDS_AUTH=on needs SPASM_CDS_PUBLIC_URL, the base URL EHRs call (e.g. "
                         "https://cds.example.org): a JWT's aud is checked against it, never against the Host header")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"SPASM_CDS_PUBLIC_URL: {url!r} is not an absolute http(s) URL without query or fragment")
