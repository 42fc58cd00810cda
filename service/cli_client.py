"""The CLI's one way to the server: an HTTP client with the caller's key, and how a response is printed."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from meterway.settings import Settings


def client(settings: Settings | None = None) -> httpx.Client:
    """An HTTP client for the server at METERWAY_URL with METERWAY_API_KEY (or the local admin key)."""
    settings = settings or Settings.from_env()
    url = os.environ.get("METERWAY_URL", f"http://{settings.server.host}:{settings.server.port}")
    key = os.environ.get("METERWAY_API_KEY") or settings.auth.admin_key
    if not key:
        from service.secrets import admin_key_file

        path = admin_key_file(settings)
        key = path.read_text().strip() if path.exists() else ""
    if not key:
        raise SystemExit("meterway: set METERWAY_API_KEY (or METERWAY_ADMIN_KEY) to talk to the server")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def print_response(response: httpx.Response) -> Any:
    """Print a JSON response; an error body becomes the exit message."""
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else response.text
        raise SystemExit(f"meterway: {response.status_code}: {message}")
    print(json.dumps(body, indent=2))
    return body


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success; an error stops the command with the server's message."""
    if response.status_code >= 400:
        print_response(response)  # exits with "meterway: <status>: <message>"
    return dict(response.json())
