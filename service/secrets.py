"""The platform admin key and the key-hashing pepper: from the environment, or generated once locally.

In local mode a missing ``METERWAY_ADMIN_KEY`` is generated under ``METERWAY_HOME`` (mode 0600) and printed
once by ``meterway serve``; outside local mode both must be set, and a generated one is refused.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.auth import KeyHasher, new_secret

if TYPE_CHECKING:
    from pathlib import Path

    from meterway.settings import Settings


@dataclass(frozen=True)
class PlatformSecrets:
    admin_key: str
    hasher: KeyHasher
    admin_key_generated: bool = False


def admin_key_file(settings: Settings) -> Path:
    return settings.home / "admin.key"


def load_secrets(settings: Settings) -> PlatformSecrets:
    """The admin key and hasher for this server; generates missing ones in local mode only."""
    admin_key, generated = settings.auth.admin_key, False
    pepper = settings.auth.key_pepper
    if not settings.is_local and (not admin_key or not pepper):
        raise RuntimeError("METERWAY_ADMIN_KEY and METERWAY_KEY_PEPPER must be set outside local mode "
                           "(METERWAY_MODE=production refuses generated secrets).")
    if not admin_key:
        admin_key, generated = _read_or_create(admin_key_file(settings), new_secret)
    if not pepper:
        pepper, _ = _read_or_create(settings.home / "key_pepper", lambda: secrets.token_hex(32))
    return PlatformSecrets(admin_key, KeyHasher(pepper), generated)


def _read_or_create(path: Path, make: object) -> tuple[str, bool]:
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()  # type: ignore[operator]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return str(value), True
