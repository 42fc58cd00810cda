"""Prometheus metrics of the gateway, on an app-owned registry, joined with the pool's exposition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from meterway import failures

if TYPE_CHECKING:
    from models.pool.api import ModelPool


class Telemetry:
    """The gateway's counters; ``exposition`` adds the pool's own metrics."""

    def __init__(self, pool: ModelPool, token: str = "") -> None:
        self._pool = pool
        self.token = token  # METERWAY_METRICS_TOKEN: when set, /metrics needs it
        self.registry = CollectorRegistry()
        self.requests = Counter("meterway_http_requests", "HTTP requests answered", ["status"],
                                registry=self.registry)
        self.latency = Histogram("meterway_http_request_seconds", "HTTP request duration (to the last byte)",
                                 registry=self.registry)

    def observe(self, status: int, seconds: float) -> None:
        """Count one answered request (called by the request-id middleware)."""
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + failures.exposition() + self._pool.metrics_text().encode()
