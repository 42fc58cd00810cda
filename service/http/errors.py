"""The one place errors become HTTP: status, OpenAI's error body, ``Retry-After`` and rate-limit headers."""

from __future__ import annotations

import math
import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from meterway.errors import InternalFailure, InvalidRequest, MeterwayError, Unavailable

log = structlog.get_logger("meterway.http")

_HTTP_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "unknown_url"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


def error_headers(error: MeterwayError) -> dict[str, str]:
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
        headers["retry-after-ms"] = str(max(1, int(error.retry_after * 1000)))
    return headers


def to_meterway(exc: Exception) -> MeterwayError:
    """Any exception as a ``MeterwayError``; unexpected ones become a 500 without internals."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:  # a dependency's task group
        return to_meterway(exc.exceptions[0])  # type: ignore[arg-type]
    if isinstance(exc, MeterwayError):
        return exc
    if _database_unreachable(exc):
        error = Unavailable("The service's database is unreachable; retry shortly.")
        error.retry_after = 1.0
        return error
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    if isinstance(exc, RecursionError):  # only JSON decoding recurses this deep
        return InvalidRequest("The JSON body is nested too deeply.", code="invalid_json")
    return InternalFailure("The server had an error while processing your request.")


def _database_unreachable(exc: BaseException) -> bool:
    """A lost or refused database connection (a fact of the moment, not of the request)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError) or (
        exc.__cause__ is not None and exc.__cause__ is not exc and _database_unreachable(exc.__cause__))


def _from_http(exc: HTTPException) -> MeterwayError:
    kind, code = _HTTP_CODES.get(exc.status_code, ("invalid_request_error", None))
    message, param = str(exc.detail), None
    if isinstance(exc, ValidationException) or exc.status_code == 400:
        message, param = _validation_message(exc)
    elif exc.status_code == 404:
        message = "Unknown request URL. Please check the URL and method."
    elif exc.status_code == 413:
        message = "Request body too large."
    error = MeterwayError(message, param=param, code=code, headers=dict(exc.headers or {}))
    error.status, error.type = exc.status_code, kind
    return error


def _validation_message(exc: HTTPException) -> tuple[str, str | None]:
    extra: Any = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        text = str(first.get("message", exc.detail))
        if unknown := _UNKNOWN.search(text):
            key = first.get("key")
            at = _param_of(text) or (key if key not in (None, "", "data") else None)
            name = f"{at}.{unknown.group(1)}" if at else unknown.group(1)
            return f"Unrecognized request argument supplied: {name}", name
        param = _param_of(text) or (first.get("key") if first.get("key") != "data" else None)
        return (f"Invalid value for '{param}': {text}" if param else text), param
    detail = str(exc.detail)
    if "JSON" in detail or "json" in detail:
        return "We could not parse the JSON body of your request. Make sure it is valid JSON.", None
    return detail, None


_AT = re.compile(r"at `\$\.?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _param_of(message: str) -> str | None:
    """The field a msgspec validation message names: ``$.messages[0].role`` becomes ``messages[0].role``."""
    at, missing = _AT.search(message), _MISSING.search(message)
    path = at.group(1) if at else ""
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar exception handler for every exception."""
    error = to_meterway(exc)
    if error.status >= 500:
        log.error("request failed", error=error.message, exc_info=exc if error is not exc else None)
    return Response(error.body(), status_code=error.status, headers=error_headers(error),
                    media_type="application/json")
