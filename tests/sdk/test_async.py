"""``AsyncClient``, the twin: the same resource groups awaited, pages walked with ``async for``, SSE streamed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from meterway import AsyncClient, NotFoundError, RateLimitError
from tests.server import ADMIN_KEY

if TYPE_CHECKING:
    from tests.server import ServerProcess

CHAT = {"model": "meterway-echo", "max_tokens": 3, "messages": [{"role": "user", "content": "a b c"}]}


async def test_async_resources_and_pages(server: ServerProcess, tenant: str) -> None:
    async with AsyncClient(server.url, ADMIN_KEY, max_retries=0) as admin:
        made = [(await admin.keys.create(tenant=tenant, name=f"k{i}")).id for i in range(3)]
        assert {k.id for k in await admin.keys.list(tenant=tenant)} == set(made)
        entries = [e.target async for e in admin.audit.list(tenant=tenant, action="key.create", limit=1)]
        assert entries == made[::-1]
        usage = await admin.request("GET", "/v1/usage", params={"tenant": tenant, "group_by": ""})
        assert usage["object"] == "usage_report" and usage["total"]["requests"] == 0
        with pytest.raises(NotFoundError) as missing:
            await admin.keys.get("key_nothing")
        assert missing.value.status_code == 404
        with pytest.raises(TypeError, match="async for"):
            list(admin.audit.list())


async def test_async_stream_passes_server_sent_events(server: ServerProcess, tenant: str) -> None:
    async with AsyncClient(server.url, str(server.create_key(tenant)["secret"])) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) > 2
        with pytest.raises(NotFoundError):
            async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "model": "no-such-model"}):
                pass


async def test_async_upload_in_parts_and_retries(server: ServerProcess, tenant: str) -> None:
    secret = str(server.create_key(tenant, rpm=1)["secret"])
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncClient(server.url, secret, max_retries=1) as client:
        client._sleep = record
        made = await client.files.create(b"x" * 2500, purpose="fine-tune", filename="w.tar",
                                         part_bytes=1000)
        assert await client.files.content(made.id) == b"x" * 2500
        await client.post("/v1/chat/completions", json=CHAT)
        with pytest.raises(RateLimitError):
            await client.post("/v1/chat/completions", json=CHAT)
    assert len(waits) == 1
