"""Logs are JSON lines in every process, with the request id on the request path."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

pytestmark = pytest.mark.slow


def test_every_line_of_gateway_uvicorn_and_worker_is_json(start_server: ServerFactory) -> None:
    gateway = start_server({"METERWAY_LOG_LEVEL": "info"})
    key = str(gateway.create_key("logged")["secret"])
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=120,
                        headers={"authorization": f"Bearer {key}"})
    httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{", timeout=30,  # an error is logged too
               headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    gateway.stop()
    lines = [line for line in gateway.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert answer.status_code == 200
    assert any(r.get("logger", "").startswith("uvicorn") for r in records), "uvicorn's own lines"
    assert any(r.get("process") == "worker" for r in records), "the worker's lines"
    served = [r for r in records if r.get("event") == "request" and r.get("path") == "/v1/chat/completions"]
    assert len(served) == 2 and all(r["request_id"].startswith("req_") for r in served)
    assert answer.headers["x-request-id"] in {r["request_id"] for r in served}
