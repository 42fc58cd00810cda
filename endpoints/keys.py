"""Endpoint keys, as in the reference design: a primary and a secondary key per endpoint.

A key is derived, never stored: ``mwe-`` + an HMAC (under the server's pepper) of the endpoint, the key type
and a random nonce kept in the endpoint's row. Listing the keys derives them again; regenerating one
replaces its nonce, so the other key keeps working and a caller rotates without downtime. A copy of the
database alone yields no key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

KEY_TYPES = ("primary", "secondary")
KEY_PREFIX = "mwe-"  # scanners tell endpoint keys from tenant keys (``mw-``) by it
Sign = Callable[[str], str]  # an HMAC-SHA256 hex digest of the message under the server's pepper


def new_nonce() -> str:
    return secrets.token_hex(16)


def key_id_of(endpoint: str, key_type: str) -> str:
    """The key id an endpoint key's usage is counted under (and a batch job it creates remembers)."""
    return f"ep:{endpoint}:{key_type}"


def is_endpoint_key_id(key_id: str) -> bool:
    return key_id.startswith("ep:")


def is_endpoint_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX)


def derive(sign: Sign, endpoint: str, key_type: str, nonce: str) -> str:
    return KEY_PREFIX + sign(f"endpoint-key\x00{endpoint}\x00{key_type}\x00{nonce}")[:48]


def matching_type(sign: Sign, endpoint: str, nonces: dict[str, str], secret: str) -> str | None:
    """Which of the endpoint's keys ``secret`` is (compared in constant time), or None."""
    found = None
    for key_type in KEY_TYPES:
        if secrets.compare_digest(derive(sign, endpoint, key_type, nonces[key_type]), secret):
            found = key_type
    return found
