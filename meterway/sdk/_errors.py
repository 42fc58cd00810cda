"""The SDK's one error hierarchy, OpenAI-shaped::

    MeterwayError
    ├── APIConnectionError          the server could not be reached (DNS, refused, reset)
    │   └── APITimeoutError         ... or did not answer within ``timeout``
    └── APIError                    the server answered with a 4xx/5xx status
        ├── BadRequestError               400
        ├── AuthenticationError           401
        ├── PaymentRequiredError          402 (budget exhausted)
        ├── PermissionDeniedError         403
        ├── NotFoundError                 404
        ├── ConflictError                 409
        ├── PayloadTooLargeError          413
        ├── UnprocessableEntityError      422
        ├── RateLimitError                429
        └── InternalServerError           5xx
            └── ServiceUnavailableError   503

An ``APIError`` carries the server's body ``{"error": {"message", "type", "param", "code"}}`` decoded into
attributes, plus ``status_code``, ``request_id``, the raw ``body`` and the response ``headers``.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError", "APIError", "APITimeoutError", "AuthenticationError", "BadRequestError",
    "ConflictError", "InternalServerError", "MeterwayError", "NotFoundError", "PayloadTooLargeError",
    "PaymentRequiredError", "PermissionDeniedError", "RateLimitError", "ServiceUnavailableError",
    "UnprocessableEntityError", "error_from_response",
]


class MeterwayError(Exception):
    """Anything the SDK raises."""


class APIConnectionError(MeterwayError):
    """The request did not get an answer: the connection failed or broke."""

    def __init__(self, message: str = "connection error", *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The server did not answer within the client's timeout."""


class APIError(MeterwayError):
    """The server answered with an error status; the fields are those of its OpenAI-shaped error body."""

    status_code: int

    def __init__(self, message: str, *, status_code: int, body: Any = None,
                 headers: httpx.Headers | None = None) -> None:
        super().__init__(f"{status_code}: {message}")
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.message = message
        self.status_code = status_code
        self.type: str | None = error.get("type")
        self.param: str | None = error.get("param")
        self.code: str | None = error.get("code")
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()
        self.request_id: str | None = self.headers.get("x-request-id")


class BadRequestError(APIError):
    """400: the request is malformed or names a bad value (``param`` says which)."""


class AuthenticationError(APIError):
    """401: no key, or an unknown, revoked or expired one."""


class PaymentRequiredError(APIError):
    """402: the key's or tenant's budget is spent."""


class PermissionDeniedError(APIError):
    """403: the key's role or scope does not allow this."""


class NotFoundError(APIError):
    """404: no such resource (or not the caller's)."""


class ConflictError(APIError):
    """409: the resource exists already, or is in a state that forbids this."""


class PayloadTooLargeError(APIError):
    """413: the body is over the server's limit."""


class UnprocessableEntityError(APIError):
    """422: the body is well-formed but cannot be processed."""


class RateLimitError(APIError):
    """429: a request or token rate limit; ``Retry-After`` says when to try again."""


class InternalServerError(APIError):
    """5xx: the server failed."""


class ServiceUnavailableError(InternalServerError):
    """503: the server is overloaded or a model is not ready; ``Retry-After`` may say when to retry."""


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError, 401: AuthenticationError, 402: PaymentRequiredError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError, 422: UnprocessableEntityError,
    429: RateLimitError, 503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The ``APIError`` subclass for an error response, its fields read from the body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text or None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = body if isinstance(body, str) else (response.reason_phrase or "error")
    status = response.status_code
    kind = BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIError)
    return kind(message, status_code=status, body=body, headers=response.headers)
