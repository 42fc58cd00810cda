"""A real OpenID Connect issuer for the tests, on 127.0.0.1: discovery document, JWKS, signing keys.

The identity providers themselves cannot be reached from here, so the tests run their own: a thread serving
``/.well-known/openid-configuration`` and ``/jwks`` over HTTP, with RS256 and ES256 keys made by
``cryptography`` and tokens minted by PyJWT. Keys rotate as at a real provider: ``add_key`` publishes a new
one, ``retire`` takes one out of the JWKS. ``jwks_requests`` counts how often the key set was fetched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ALGORITHMS: dict[str, Any] = {"RS256": jwt.algorithms.RSAAlgorithm, "ES256": jwt.algorithms.ECAlgorithm}


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = json.loads(ALGORITHMS[self.alg].to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_private_key(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class OidcIssuer:
    """One issuer; ``start()`` serves it, ``url`` is its ``iss``."""

    path: str = ""  # issuers often have a path (``https://login.example/tenant-id/v2.0``)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    keys: dict[str, SigningKey] = field(default_factory=dict)
    retired: dict[str, SigningKey] = field(default_factory=dict)  # still able to sign, no longer published
    jwks_requests: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def start(self) -> OidcIssuer:
        for alg in self.algorithms:
            self.add_key(alg)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True, name="oidc-issuer").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_key(self, alg: str = "RS256") -> str:
        """Publish a new signing key; its kid."""
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = SigningKey(kid, alg, new_private_key(alg))
        return kid

    def retire(self, kid: str) -> None:
        """Take a key out of the JWKS (tokens it signed stop verifying once verifiers refresh)."""
        self.retired[kid] = self.keys.pop(kid)

    def kid(self, alg: str = "RS256") -> str:
        """The newest published key of ``alg``."""
        return [key.kid for key in self.keys.values() if key.alg == alg][-1]

    def claims(self, audience: str, subject: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
        """Valid claims for ``audience``, now; ``extra`` adds or replaces claims."""
        now = int(time.time())
        return {"iss": self.url, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + 300,
                **extra}

    def mint(self, claims: dict[str, Any], alg: str = "RS256", kid: str | None = None, *,
             header_kid: str | None = None) -> str:
        """A token of ``claims`` signed by ``kid`` (the newest key of ``alg`` by default); ``header_kid`` names
        another kid in its header than the key that signed it."""
        key = {**self.retired, **self.keys}[kid or self.kid(alg)]
        return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": header_kid or key.kid})

    def public_pem(self, kid: str) -> bytes:
        return bytes(self.keys[kid].private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks", "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": list(self.algorithms)}

    def jwks(self) -> dict[str, Any]:
        self.jwks_requests += 1
        return {"keys": [key.jwk() for key in list(self.keys.values())]}


def _segment(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str | None = None) -> str:
    """An ``alg: none`` token: no signature at all."""
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{_segment(header)}.{_segment(claims)}."


def hmac_signed(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token with ``secret`` as the HMAC key (PyJWT itself refuses to make one with a public key)."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_segment(signature)}"


def tampered(token: str, **changes: Any) -> str:
    """``token`` with claims changed and its original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_segment({**claims, **changes})}.{signature}"


def _handler(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            documents = {f"{issuer.path}/.well-known/openid-configuration": issuer.discovery,
                         f"{issuer.path}/jwks": issuer.jwks}
            document = documents.get(self.path)
            body = json.dumps(document() if document else {"error": "not found"}).encode()
            self.send_response(200 if document else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
