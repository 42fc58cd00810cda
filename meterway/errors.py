"""meterway's one error hierarchy.

Every domain raises these where the failure happens; ``service.http.errors`` maps them, in one place, to an
HTTP status and OpenAI's error body ``{"error": {"message", "type", "param", "code"}}`` (and, inside a
stream, to an SSE error event)::

    MeterwayError
    ├── InvalidRequest (400)          ── ContextTooLong (400 context_length_exceeded), UploadRejected (400)
    ├── AuthenticationFailed (401)
    ├── PaymentRequired (402)          ── BudgetExhausted (402 insufficient_quota)
    ├── PermissionDenied (403)
    ├── NotFound (404)                 ── ModelNotFound (404 model_not_found)
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── RateLimited (429)              ── ModelOverloaded (429 model_overloaded)
    ├── InternalFailure (500)          ── WorkerCrashed (500 worker_crashed)
    ├── Unavailable (503)              ── ModelLoading (503 model_loading), BillingUnavailable (503)
    └── GenerationTimeout (504 timeout)
"""

from __future__ import annotations


class MeterwayError(Exception):
    """Base of every error a caller may see; subclasses fix status, type and code."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        """OpenAI's error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(MeterwayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class ContextTooLong(InvalidRequest):
    code = "context_length_exceeded"


class UploadRejected(InvalidRequest):
    code = "invalid_upload"


class AuthenticationFailed(MeterwayError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class PaymentRequired(MeterwayError):
    status, type, code = 402, "insufficient_quota", "insufficient_quota"


class BudgetExhausted(PaymentRequired):
    pass


class PermissionDenied(MeterwayError):
    status, type, code = 403, "permission_error", "permission_denied"


class NotFound(MeterwayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.", param="model")


class Conflict(MeterwayError):
    status, type, code = 409, "invalid_request_error", "conflict"


class InsufficientCapacity(Conflict):
    """A dedicated deployment's instances do not fit the pool's memory beside the others'."""

    code = "insufficient_capacity"


class PayloadTooLarge(MeterwayError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class RateLimited(MeterwayError):
    status, type, code = 429, "requests", "rate_limit_exceeded"


class ModelOverloaded(RateLimited):
    type, code = "server_error", "model_overloaded"


class InternalFailure(MeterwayError):
    status, type, code = 500, "server_error", "internal_error"


class WorkerCrashed(InternalFailure):
    code = "worker_crashed"


class Unavailable(MeterwayError):
    status, type, code = 503, "server_error", "service_unavailable"


class ModelLoading(Unavailable):
    code = "model_loading"


class BillingUnavailable(Unavailable):
    code = "billing_unavailable"


class GenerationTimeout(MeterwayError):
    status, type, code = 504, "server_error", "timeout"
