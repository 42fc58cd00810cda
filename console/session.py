"""Console sessions: the signed-in user's API key sealed in an HttpOnly cookie.

The cookie is a Fernet token (AES-128-CBC and HMAC-SHA256) of the session, so it is both signed and
encrypted: page scripts cannot read it (HttpOnly) and neither can anyone who copies it out of the browser.
Keeping it in the cookie rather than in a server-side table means gateway replicas need share only the
secret, and a restart signs nobody out. The price: sign-out cannot revoke a copied cookie before it
expires, so the expiry (``METERWAY_CONSOLE_SESSION_TTL_S``) is short.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from pathlib import Path

    from meterway.settings import Settings

COOKIE = "mw_console"


@dataclass(frozen=True)
class Session:
    """Who is signed in: the key, whether it is the admin's, its tenant and the session's CSRF token."""

    key: str
    admin: bool
    tenant: str
    csrf: str
    issued: float

    @classmethod
    def begin(cls, key: str, admin: bool, tenant: str) -> Session:
        return cls(key, admin, tenant, secrets.token_urlsafe(24), time.time())

    def csrf_matches(self, token: str | None) -> bool:
        """Whether ``token`` (a form field or header) is this session's CSRF token."""
        return bool(token) and hmac.compare_digest(self.csrf, token or "")


class SessionSeal:
    """Seals sessions into cookie values and opens them again, refusing expired or forged ones."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        digest = hashlib.sha256(b"meterway-console:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.ttl_s = ttl_s

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def open(self, value: str | None) -> Session | None:
        """The session in ``value``, or None when it is missing, forged or older than the expiry."""
        if not value:
            return None
        try:
            return Session(**json.loads(self._fernet.decrypt(value.encode(), ttl=self.ttl_s)))
        except (InvalidToken, ValueError, TypeError):
            return None


def console_secret(settings: Settings) -> str:
    """``METERWAY_CONSOLE_SECRET``, or one generated once under METERWAY_HOME (mode 0600)."""
    if settings.console.secret:
        return settings.console.secret
    return _read_or_create(settings.home / "console.key")


def _read_or_create(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the same home wrote it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value
