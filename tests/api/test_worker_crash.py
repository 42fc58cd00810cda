"""A worker killed with SIGKILL mid-stream: the stream ends with an SSE error event, the next request is served,
and the ledger bills only what was delivered, once."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from tests.api.ledger import ledger_rows

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def _worker_pids(server: ServerProcess) -> list[int]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [c.pid for c in children if "models.pool.worker" in " ".join(c.cmdline())]


@pytest.mark.battery(5)
async def test_worker_killed_mid_stream(server: ServerProcess, tenant_key: str) -> None:
    headers = {"Authorization": f"Bearer {tenant_key}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": 200, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    delivered, error, request_id = 0, None, ""
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    error = event["error"]
                    continue
                request_id = event["id"]
                if event["choices"] and event["choices"][0]["delta"].get("content"):
                    delivered += 1
                    if delivered == 3:
                        for pid in _worker_pids(server):
                            os.kill(pid, signal.SIGKILL)
        assert error is not None and error["code"] == "worker_crashed", error
        assert 3 <= delivered < 200

        retry = await http.post("/v1/chat/completions", json={**body, "stream": False, "stream_options": None,
                                                            "max_tokens": 5})
        assert retry.status_code == 200 and retry.json()["usage"]["completion_tokens"] == 5

    row = (await ledger_rows(server, [request_id]))["by_id"][request_id]
    assert row["status"] == "failed"
    # Billed: the tokens the engine had produced when the worker died, as counted by the pool — at least what
    # the client received and never more than what was asked for.
    assert delivered <= row["completion_tokens"] < 200
