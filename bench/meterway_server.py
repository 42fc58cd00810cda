"""A meterway server for the serving benchmark: the tests' gateway process, timed, with the standby worker on.

It is ``python -m service.cli serve`` in a fresh state directory (SQLite, the local durable event log) over
an existing model store, exactly as ``tests.server.ServerProcess`` starts it; the benchmark keeps the pool's
standby worker (tests turn it off) because cold starts are part of what it measures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from tests.server import ServerProcess, free_port

__all__ = ["MeterwayServer", "free_port"]


@dataclass
class MeterwayServer(ServerProcess):
    """One gateway process; ``start_timed`` returns the seconds until it answered ``/health``."""

    def start_timed(self, timeout_s: float = 180.0) -> float:
        self.env = {"METERWAY_POOL_STANDBY": "1", **self.env}
        started = time.perf_counter()
        self.start(timeout_s)
        return time.perf_counter() - started

    def tenant_secret(self, tenant: str = "bench", name: str = "bench") -> str:
        """A tenant key without limits, made through the admin API; returns its secret."""
        return str(self.create_key(tenant, name)["secret"])

    def model_state(self, model: str, key: str) -> str:
        """``cold`` / ``loading`` / ``ready`` as ``GET /v1/models/{id}`` reports it."""
        response = httpx.get(f"{self.url}/v1/models/{model}", headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
        response.raise_for_status()
        return str(response.json()["state"])
