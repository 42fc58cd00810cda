"""The CLI's one way to the server: ``meterway.Client`` with the caller's key, and how an answer is printed.

The commands call the SDK; ``service.cli.main`` turns the SDK's errors into the exit message
``meterway: <status>: <message>`` (``cannot reach the server`` for a connection error).
"""

from __future__ import annotations

import json
import os
from typing import Any

from meterway import Client
from meterway.settings import Settings


def client(settings: Settings | None = None) -> Client:
    """The SDK for the server at METERWAY_URL with METERWAY_API_KEY (or the local admin key)."""
    settings = settings or Settings.from_env()
    url = os.environ.get("METERWAY_URL", f"http://{settings.server.host}:{settings.server.port}")
    key = os.environ.get("METERWAY_API_KEY") or settings.auth.admin_key
    if not key:
        from service.secrets import admin_key_file

        path = admin_key_file(settings)
        key = path.read_text().strip() if path.exists() else ""
    if not key:
        raise SystemExit("meterway: set METERWAY_API_KEY (or METERWAY_ADMIN_KEY) to talk to the server")
    return Client(url, key, timeout=60)


def print_json(answer: Any) -> Any:
    """Print an answer as indented JSON (a record as the server sent it) and return it."""
    body = getattr(answer, "raw", answer)
    print(json.dumps({} if body is None else body, indent=2))
    return body
