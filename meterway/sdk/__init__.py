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
from meterway.sdk._pages import Pages
from meterway.sdk._resources._packing import pack as pack_directory
from meterway.sdk._types import (
    ApiKey,
    AuditEntry,
    Batch,
    BillingPeriod,
    Deleted,
    Deployment,
    Endpoint,
    FileObject,
    FineTunedModel,
    Identity,
    InstancePrice,
    Price,
    Record,
    Statement,
    Tenant,
    UsageReport,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKey",
    "AsyncClient",
    "AuditEntry",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BillingPeriod",
    "Client",
    "ConflictError",
    "Deleted",
    "Deployment",
    "Endpoint",
    "FileObject",
    "FineTunedModel",
    "Identity",
    "InstancePrice",
    "InternalServerError",
    "MeterwayError",
    "NotFoundError",
    "Pages",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Price",
    "RateLimitError",
    "Record",
    "ServiceUnavailableError",
    "Statement",
    "Tenant",
    "UnprocessableEntityError",
    "UsageReport",
    "pack_directory",
]
