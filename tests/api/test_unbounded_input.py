"""Battery row 13: unbounded input is refused before the model runs, exactly at the context's edge, and a
reader that stops reading its stream holds nobody else up."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from models.catalog import load_catalog
from tests.api.ledger import ledger_rows

if TYPE_CHECKING:
    from tests.battery import Figures
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"
HELLO = [{"role": "user", "content": "tell me everything"}]


def _context() -> int:
    return next(spec.context_length for spec in load_catalog(include_test_model=True) if spec.id == ECHO)


@pytest.mark.battery(13)
async def test_context_plus_one_is_refused_and_a_slow_reader_holds_nobody_up(server: ServerProcess,
                                                                             figures: Figures) -> None:
    tenant, other = f"edge-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    secret, other_secret = (str(server.create_key(name)["secret"]) for name in (tenant, other))
    async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                 headers={"Authorization": f"Bearer {secret}"}) as http:
        probe = (await http.post("/v1/chat/completions", json={"model": ECHO, "messages": HELLO, "max_tokens": 1}))
        prompt = probe.json()["usage"]["prompt_tokens"]
        room = _context() - prompt
        over = await http.post("/v1/chat/completions", json={"model": ECHO, "messages": HELLO, "max_tokens": room + 1})
        assert over.status_code == 400 and over.json()["error"]["code"] == "context_length_exceeded", over.text
        huge = await http.post("/v1/chat/completions", json={"model": ECHO, "messages": HELLO, "max_tokens": 2**31})
        assert huge.status_code == 400 and huge.json()["error"]["code"] == "context_length_exceeded", huge.text
        edge = await http.post("/v1/chat/completions", json={"model": ECHO, "messages": HELLO, "max_tokens": room})
        assert edge.status_code == 200, edge.text

        body = {"model": ECHO, "messages": HELLO, "max_tokens": room, "stream": True,
                "stream_options": {"include_usage": True}}
        async with http.stream("POST", "/v1/chat/completions", json=body) as slow:
            lines = slow.aiter_lines()
            first = await anext(lines)
            others = await _meanwhile(server, other_secret)  # the slow reader reads nothing meanwhile
            rest = [line async for line in lines if line]
    assert first.startswith("data: ") and rest[-1] == "data: [DONE]"
    assert '"usage":{' in rest[-2]  # the slow reader still got its whole answer and its usage
    assert others == [200] * len(others)
    served = [probe.json()["id"], edge.json()["id"]]
    rows = (await ledger_rows(server, served))["all"]
    mine = [row for row in rows if row["tenant"] == tenant]
    figures.record(context=_context(), refused=["context + 1", "max_tokens 2^31"], slow_reader_hold_s=3,
                   other_tenant_requests=len(others), other_tenant_served=others.count(200),
                   ledger_entries_of_refused=len(mine) - 3)
    assert len(mine) == 3  # probe, edge and the slow stream; nothing for the two refusals


async def _meanwhile(server: ServerProcess, secret: str) -> list[int]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {secret}"}) as http:
        statuses = []
        for _ in range(3):
            answers = await asyncio.gather(*(http.post("/v1/chat/completions", json={
                "model": ECHO, "messages": HELLO, "max_tokens": 8}) for _ in range(10)))
            statuses += [answer.status_code for answer in answers]
            await asyncio.sleep(1)
        return statuses
