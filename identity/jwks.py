"""Each issuer's signing keys: its discovery document's ``jwks_uri``, fetched with httpx and cached.

Keys are fetched on an issuer's first token, again once they are ``MAX_AGE_S`` old (so retired keys drop
out), and again when a token names a ``kid`` the cache does not hold (the issuer rotated) — but at most once
per ``REFRESH_BOUND_S`` per issuer, whatever the outcome, so a flood of tokens with made-up ``kid`` s (or an
issuer that is down) costs the issuer one request per bound, not one per token. Only issuers configured for
a tenant or the platform are ever contacted: the caller's token only chooses among them.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from meterway.errors import Unavailable

log = structlog.get_logger(__name__)
REFRESH_BOUND_S = 10.0
MAX_AGE_S = 3600.0
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 512 * 1024
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
_PUBLIC_TYPES = {"RSA", "EC"}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


class IssuerUnavailable(Unavailable):
    """An issuer's discovery document or key set could not be had (503: not the caller's fault)."""

    code = "identity_provider_unavailable"


@dataclass(frozen=True)
class KeySet:
    """One issuer's public signing keys as last fetched, and the algorithms it says it signs with."""

    keys: dict[str, dict[str, Any]]  # kid -> JWK ("" for the one key without a kid, if any)
    algorithms: frozenset[str]  # its id_token_signing_alg_values_supported, asymmetric ones only
    fetched_at: float


@dataclass
class _Issuer:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    keys: KeySet | None = None
    tried_at: float = -math.inf  # the last fetch, successful or not


class JwksCache:
    """``key_set(issuer, kid)``: the issuer's keys, fetched when needed within the refresh bound."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, refresh_bound_s: float = REFRESH_BOUND_S,
                 max_age_s: float = MAX_AGE_S) -> None:
        self._client = client or httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        self._bound_s, self._max_age_s = refresh_bound_s, max_age_s
        self._issuers: dict[str, _Issuer] = {}

    async def close(self) -> None:
        await self._client.aclose()

    async def key_set(self, issuer: str, kid: str | None) -> KeySet:
        """The keys of ``issuer``; fetched first if there are none, if they are old, or if ``kid`` is not
        among them — each only when the last fetch is at least the bound ago."""
        entry = self._issuers.setdefault(issuer, _Issuer())
        if entry.keys is not None and not self._wanted(entry, kid):
            return entry.keys
        async with entry.lock:  # concurrent tokens of one issuer share one fetch
            if self._wanted(entry, kid) and time.monotonic() - entry.tried_at >= self._bound_s:
                entry.tried_at = time.monotonic()
                try:
                    entry.keys = await self._fetch(issuer)
                except IssuerUnavailable:
                    if entry.keys is None:
                        raise
                    log.warning("jwks_refresh_failed", issuer=issuer, exc_info=True)  # keep the keys held
        if entry.keys is None:
            raise IssuerUnavailable("the token's identity provider could not be reached for its signing keys; "
                                    "try again shortly")
        return entry.keys

    def _wanted(self, entry: _Issuer, kid: str | None) -> bool:
        keys = entry.keys
        if keys is None or time.monotonic() - keys.fetched_at >= self._max_age_s:
            return True
        return kid is not None and kid not in keys.keys

    async def _fetch(self, issuer: str) -> KeySet:
        discovery = await self._document(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if discovery.get("issuer") != issuer:
            raise IssuerUnavailable("the identity provider's discovery document names another issuer")
        uri = discovery.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise IssuerUnavailable("the identity provider's discovery document has no jwks_uri")
        published = discovery.get("id_token_signing_alg_values_supported", ["RS256"])  # OIDC's default
        algorithms = ASYMMETRIC & {a for a in published if isinstance(a, str)} if isinstance(published, list) \
            else frozenset()
        keys = public_keys((await self._document(uri)).get("keys"))
        log.info("jwks_fetched", issuer=issuer, keys=len(keys))
        return KeySet(keys, frozenset(algorithms), time.monotonic())

    async def _document(self, url: str) -> dict[str, Any]:
        """A JSON object from ``url``, at most ``MAX_DOCUMENT_BYTES``."""
        body = bytearray()
        try:
            async with self._client.stream("GET", url, headers={"accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise IssuerUnavailable(f"the identity provider answered {response.status_code} for {url}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise IssuerUnavailable(f"the identity provider's document at {url} is too large")
            document = json.loads(body)
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable(f"the identity provider could not be read at {url}: {type(exc).__name__}") \
                from exc
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"the identity provider's document at {url} is not a JSON object")
        return document


def public_keys(members: Any) -> dict[str, dict[str, Any]]:
    """A JWKS's public signing keys by ``kid``: RSA and EC keys only (no symmetric ``oct`` key, none with
    private members, none meant for encryption)."""
    keys: dict[str, dict[str, Any]] = {}
    for jwk in members if isinstance(members, list) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") not in _PUBLIC_TYPES or jwk.get("use", "sig") != "sig":
            continue
        if _PRIVATE_MEMBERS & set(jwk):
            continue
        kid = jwk.get("kid", "")
        if isinstance(kid, str):
            keys.setdefault(kid, jwk)
    return keys
