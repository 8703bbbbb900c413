"""JWT issuers for tests: keys made here with cryptography, their JWK Sets, tokens shaped like the CDS Hooks
Sandbox's (ES384, kid, jku) and Epic's (RS384, kid, jku), and a loopback server that serves a JWK Set and records
every request it gets."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.loopback import ServedInThread

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
EPIC_ISS = "https://fhir.epic.example/interconnect-fhir-oauth/oauth2"
LIFETIME_S = 300  # both the Sandbox and Epic sign tokens valid for five minutes


@dataclass
class Issuer:
    """One signing key and the iss, kid, alg and (optional) jku its tokens carry."""

    iss: str
    alg: str
    kid: str
    private_key: Any
    jku: str | None = None

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK with kid, use and alg."""
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def jwks(self) -> dict[str, Any]:
        """A JWK Set holding this issuer's public key."""
        return {"keys": [self.jwk()]}

    def public_pem(self) -> bytes:
        """The public key in PEM, as an attacker would find it (for the HMAC confusion attack)."""
        return self.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)

    def claims(self, audience: str, **changes: Any) -> dict[str, Any]:
        """Valid claims for the audience URL; a change to None removes the claim."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.iss, "aud": audience, "exp": now + LIFETIME_S, "iat": now,
                                  "jti": str(uuid.uuid4())}
        if self.alg == "RS384":  # Epic also sends sub (its client id) and nbf
            claims.update(sub="epic-client-id", nbf=now)
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def header(self, **changes: Any) -> dict[str, Any]:
        """The JWS header this issuer sends; a change to None removes the field."""
        header: dict[str, Any] = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        if self.jku:
            header["jku"] = self.jku
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def token(self, audience: str, header: dict[str, Any] | None = None, **changes: Any) -> str:
        """A signed token for the audience URL, with claim changes and header changes applied."""
        full_header = self.header(**(header or {}))
        alg = full_header.pop("alg")
        return jwt.encode(self.claims(audience, **changes), self.private_key, algorithm=alg, headers=full_header)


def ec_issuer(iss: str = SANDBOX_ISS, kid: str = SANDBOX_KID, jku: str | None = SANDBOX_JKU,
              curve: ec.EllipticCurve | None = None, alg: str = "ES384") -> Issuer:
    """An issuer with a fresh P-384 key, by default shaped like the CDS Hooks Sandbox."""
    return Issuer(iss=iss, alg=alg, kid=kid, jku=jku, private_key=ec.generate_private_key(curve or ec.SECP384R1()))


def rsa_issuer(iss: str = EPIC_ISS, kid: str | None = None, jku: str | None = None, bits: int = 2048) -> Issuer:
    """An issuer with a fresh RSA key, shaped like Epic (RS384 with a jku)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return Issuer(iss=iss, alg="RS384", kid=kid or uuid.uuid4().hex, jku=jku, private_key=key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built by hand, for tokens PyJWT refuses to make (alg none, forged signatures)."""
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


def hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes, digest=hashlib.sha256) -> str:
    """A token MACed with secret (the public-key-as-HMAC-secret confusion attack)."""
    signing_input = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())])
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), digest).digest())


def with_payload(token: str, claims: dict[str, Any]) -> str:
    """The token with its payload replaced and its original signature kept (tampering)."""
    head, _, signature = token.split(".")
    return ".".join([head, _b64(json.dumps(claims).encode()), signature])


def write_issuers(folder: Path, issuers: dict[str, dict[str, Any]], jwks_files: dict[str, dict] | None = None) -> Path:
    """Write a trusted-issuers YAML file (and JWK Set files beside it); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, jwks in (jwks_files or {}).items():
        (folder / name).write_text(json.dumps(jwks), encoding="utf-8")
    path = folder / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": issuers}), encoding="utf-8")
    return path


@dataclass
class JwksServer(ServedInThread):
    """A real HTTP server on a loopback address that serves `jwks` at /jwks.json and records each request path."""

    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    host: str = "127.0.0.1"
    seen: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}/jwks.json"

    def __enter__(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.seen.append(self.path)
                data = json.dumps(owner.jwks).encode() if self.path == "/jwks.json" else b"{}"
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._serve(ThreadingHTTPServer((self.host, 0), Handler))
        return self
