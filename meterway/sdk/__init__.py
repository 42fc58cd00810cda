"""meterway's Python SDK: the management API (keys, tenants, prices, usage, fine-tunes, endpoints, batches,
files, audit) over httpx, synchronous (``Client``) and asyncio (``AsyncClient``).

    from meterway import Client

    with Client() as client:                     # METERWAY_URL, METERWAY_API_KEY
        for key in client.keys.list():
            print(key.id, key.name)
"""

from meterway.sdk._client import AsyncClient, Client
from meterway.sdk._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
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
