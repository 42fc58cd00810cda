"""Prometheus metrics of the gateway, on an app-owned registry, joined with the pool's exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from models.pool.api import ModelPool


class Telemetry:
    """The gateway's counters; ``exposition`` adds the pool's own metrics."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool
        self.registry = CollectorRegistry()
        self.requests = Counter("meterway_requests", "HTTP requests served", ["route", "status"],
                                registry=self.registry)
        self.tokens = Counter("meterway_billed_tokens", "tokens recorded for billing", ["model", "kind"],
                              registry=self.registry)
        self.latency = Histogram("meterway_request_seconds", "HTTP request duration", ["route"],
                                 registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + self._pool.metrics_text().encode()
