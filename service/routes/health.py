"""Liveness and Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from meterway.errors import AuthenticationFailed
from service.telemetry import Telemetry


@get("/health", summary="Health check", tags=["Operations"], include_in_schema=True, security=[{}])
async def health() -> dict[str, str]:
    """200 once the server takes requests (the pool and the database are up)."""
    return {"status": "ok"}


@get("/metrics", summary="Prometheus metrics", tags=["Operations"], media_type="text/plain; version=0.0.4",
     security=[{}])
async def metrics(telemetry: Telemetry, request: Request[Any, Any, Any]) -> Response[bytes]:
    """Gateway and pool metrics in Prometheus' text format (behind ``METERWAY_METRICS_TOKEN`` when set)."""
    if telemetry.token and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), f"Bearer {telemetry.token}".encode()):
        raise AuthenticationFailed("/metrics needs 'Authorization: Bearer <METERWAY_METRICS_TOKEN>'.")
    return Response(telemetry.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


health_handlers = [health, metrics]
