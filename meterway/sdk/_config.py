"""What both clients share besides the I/O: settings from the environment, request building, decoding."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from meterway.sdk._errors import APIConnectionError, APITimeoutError, error_from_response

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "meterway-python"


@dataclass(frozen=True)
class ClientConfig:
    """The server, the key and the timeout; ``from_args`` fills gaps from METERWAY_URL / METERWAY_API_KEY."""

    base_url: str
    api_key: str
    timeout: float

    @classmethod
    def from_args(cls, base_url: str | None, api_key: str | None, timeout: float) -> ClientConfig:
        """Explicit arguments first, then the environment; no key at all is an error."""
        key = api_key or os.environ.get("METERWAY_API_KEY")
        if not key:
            raise ValueError("meterway: pass api_key= or set METERWAY_API_KEY")
        url = base_url or os.environ.get("METERWAY_URL") or DEFAULT_URL
        return cls(url.rstrip("/"), key, timeout)

    def http_options(self) -> dict[str, Any]:
        """The keyword arguments an ``httpx.Client`` or ``httpx.AsyncClient`` is built with."""
        headers = {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}
        return {"base_url": self.base_url, "headers": headers, "timeout": self.timeout}


def clean_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the ones left as None; booleans as the server spells them."""
    if params is None:
        return None
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}


def decode(response: httpx.Response) -> Any:
    """The decoded JSON body of a success (text when it is not JSON, None when empty); an error raises."""
    if response.is_error:
        raise error_from_response(response)
    if not response.content:
        return None
    media = response.headers.get("content-type", "application/json").split(";")[0].strip()
    if media == "application/json" or media.endswith("+json"):
        return response.json()
    return response.text


def content(response: httpx.Response) -> bytes:
    """The bytes of a success; an error raises."""
    if response.is_error:
        raise error_from_response(response)
    return response.content


def transport_error(exc: httpx.TransportError) -> APIConnectionError:
    """The SDK's error for a transport failure."""
    request = exc.request if hasattr(exc, "_request") else None
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out: {exc}", request=request)
    return APIConnectionError(f"connection error: {exc}", request=request)
