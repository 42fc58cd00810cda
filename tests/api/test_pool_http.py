"""The pool as a caller sees it: cold start visible in headers and /v1/models, metrics in Prometheus format."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
COLD_MODEL = "smollm2-135m-instruct-bf16"  # no other API test calls it, so it starts cold


async def test_cold_start_is_visible_then_ready(server: ServerProcess, tenant_key: str) -> None:
    headers = {"Authorization": f"Bearer {tenant_key}"}
    body = {"model": COLD_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http:
        states = {m["id"]: m["state"] for m in (await http.get("/v1/models")).json()["data"]}
        assert states[COLD_MODEL] == "cold"
        first = await http.post("/v1/chat/completions", json=body)
        second = await http.post("/v1/chat/completions", json=body)
        states = {m["id"]: m["state"] for m in (await http.get("/v1/models")).json()["data"]}
        metrics = (await http.get("/metrics")).text
    assert first.status_code == 200 and first.headers["x-meterway-model-state"] in {"cold", "loading"}
    assert second.status_code == 200 and second.headers["x-meterway-model-state"] == "ready"
    assert states[COLD_MODEL] == "ready"
    for name in ("meterway_pool_loads_total", "meterway_pool_cold_start_seconds", "meterway_pool_queue_depth",
                 "meterway_pool_batch_size", "meterway_pool_tokens_generated_total",
                 "meterway_pool_time_to_first_token_seconds", "meterway_pool_evictions_total",
                 "meterway_http_requests_total"):
        assert name in metrics, name
    assert f'meterway_pool_loads_total{{model="{COLD_MODEL}"}} 1.0' in metrics
