"""Pure ASGI middleware: a request id on every request and response, and one JSON access log line."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from service.arrivals import Arrivals, is_generation

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("meterway.access")
Observe = Callable[[int, float], None]
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_middleware(app: ASGIApp, observe: Observe | None = None) -> ASGIApp:
    """Bind ``request_id`` for structlog, return it as ``x-request-id``, and report status and duration."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            log.info("request", method=scope.get("method"), path=scope["path"], status=status["code"],
                     duration_ms=round(seconds * 1000, 2))
            if observe is not None:
                observe(status["code"], seconds)

    return middleware


def arrivals_middleware(app: ASGIApp, arrivals: Arrivals) -> ASGIApp:
    """Count generation requests as being read (``service.arrivals``) from here until they run or end."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_generation(str(scope.get("method")), scope["path"]):
            await app(scope, receive, send)
            return
        with arrivals.arriving():
            await app(scope, receive, send)

    return middleware


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_ID.match(text) else None
    return None


def allow_middleware(app: ASGIApp) -> ASGIApp:
    """``OPTIONS`` answers ``Allow`` with every method of the path (litestar's own lists only some when
    several handlers share a path)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "OPTIONS":
            await app(scope, receive, send)
            return
        handler = scope.get("route_handler")
        paths = set(getattr(handler, "paths", ()))
        methods = sorted({m for route in scope["litestar_app"].routes if route.path in paths
                          for m in getattr(route, "methods", ())})

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", ", ".join(methods).encode())]
            await send(message)

        await app(scope, receive, send_allow)

    return middleware
