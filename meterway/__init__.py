"""meterway's shared vocabulary: the error hierarchy (``errors``), the typed settings (``settings``), the
database handle (``db``), the one table metadata (``tables``) and tolerated-error accounting (``failures``);
and the Python SDK (``meterway.sdk``: ``Client``, ``AsyncClient``, ``APIError`` and its subclasses).

The bottom layer. Every other package (``service``, ``models``, ``billing``) may import it;
it imports nothing else of the project (``tests/test_layers.py`` holds that rule).

The SDK's names are re-exported lazily (``from meterway import Client`` imports ``meterway.sdk`` on first
use), so that a worker importing ``meterway.errors`` or ``meterway.settings`` does not load httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meterway.sdk import (
        APIConnectionError,
        APIError,
        APITimeoutError,
        AsyncClient,
        AuthenticationError,
        BadRequestError,
        Client,
        ConflictError,
        InternalServerError,
        MeterwayError,
        NotFoundError,
        PayloadTooLargeError,
        PaymentRequiredError,
        PermissionDeniedError,
        RateLimitError,
        ServiceUnavailableError,
        UnprocessableEntityError,
    )

__all__ = [
    "APIConnectionError", "APIError", "APITimeoutError", "AsyncClient", "AuthenticationError",
    "BadRequestError", "Client", "ConflictError", "InternalServerError", "MeterwayError", "NotFoundError",
    "PayloadTooLargeError", "PaymentRequiredError", "PermissionDeniedError", "RateLimitError",
    "ServiceUnavailableError", "UnprocessableEntityError",
]
SDK_NAMES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    """``meterway.Client`` and the SDK's errors, imported on first use."""
    if name in SDK_NAMES:
        return getattr(importlib.import_module("meterway.sdk"), name)
    raise AttributeError(f"module 'meterway' has no attribute {name!r}")
