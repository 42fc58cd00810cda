"""Who is calling: API key secrets, their hashes, and the ``Principal`` a request acts as.

A key is ``mw-`` + 40 random base62 characters; scanners find leaked keys by the prefix. Only the first
15 characters (the lookup prefix) and an HMAC-SHA256 of the whole secret (keyed by the server's pepper) are
stored; verification compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

KEY_PREFIX = "mw-"
_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LENGTH = 15


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant's key, an endpoint's key, or the platform admin (``tenant`` None for the admin)."""

    tenant: str | None
    key_id: str | None
    is_admin: bool = False
    limits: Any = field(default=None, compare=False)  # the key's ``KeyLimits`` (None: unlimited)
    endpoint: str | None = None  # an endpoint key's endpoint: the only one it may call
    roles: frozenset[str] = frozenset({"owner"})  # meterway.roles; the admin's are {"admin"}
    subject: str | None = None  # a token's subject (its usage records it); None for keys
    models: frozenset[str] | None = None  # a scoped key: the only models it may call (None: any)
    endpoints: frozenset[str] | None = None  # a scoped key: the only endpoints it may call (None: any)

    @property
    def billing_tenant(self) -> str:
        """The tenant whose usage this caller's requests are (the admin's own calls bill to 'admin')."""
        return self.tenant or "admin"

    @property
    def billing_key(self) -> str:
        """The key this caller's usage and limits are counted under (the admin's own calls: 'admin')."""
        return self.key_id or "admin"


def new_secret() -> str:
    """A fresh key secret."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def lookup_prefix(secret: str) -> str:
    """The stored, non-secret part used to find a key's row."""
    return secret[:_LOOKUP_LENGTH]


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and len(secret) > _LOOKUP_LENGTH


class KeyHasher:
    """HMAC-SHA256 of secrets under the server's pepper."""

    def __init__(self, pepper: str) -> None:
        self._pepper = pepper.encode()

    def digest(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()


def secret_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The key sent as ``Authorization: Bearer ...`` or as Azure's ``api-key`` header."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    return None
