"""The ledger equals what the responses reported: row for row, once per request, abandoned streams included."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from tests.api.ledger import ledger_rows
from tests.battery import scaled

if TYPE_CHECKING:
    from tests.battery import Figures
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "Name three colours."}]


async def _abandon_after(client: openai.AsyncOpenAI, chunks: int, model: str = MODEL,
                         max_tokens: int = 40) -> tuple[str, int]:
    """Open a stream, read ``chunks`` content chunks, close the connection; returns (id, chunks read)."""
    stream = await client.chat.completions.create(model=model, messages=QUESTION, max_tokens=max_tokens,
                                                  temperature=0, stream=True)
    request_id, seen = "", 0
    async for chunk in stream:
        request_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
        if seen >= chunks:
            break
    await stream.close()
    return request_id, seen


async def test_ledger_rows_equal_usage_row_for_row(server: ServerProcess, client: openai.AsyncOpenAI) -> None:
    expected: dict[str, tuple[int, int]] = {}
    for max_tokens in (3, 6):
        reply = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=max_tokens)
        assert reply.usage is not None
        expected[reply.id] = (reply.usage.prompt_tokens, reply.usage.completion_tokens)
        stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=max_tokens,
                                                      stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.usage is not None:
                expected[chunk.id] = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
    abandoned_id, seen = await _abandon_after(client, 2)

    rows = (await ledger_rows(server, [*expected, abandoned_id]))["by_id"]
    for request_id, (prompt, completion) in expected.items():
        row = rows[request_id]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
        assert row["status"] == "completed"
        price_in, price_out = Decimal(row["input_per_million"]), Decimal(row["output_per_million"])
        assert Decimal(row["cost"]) == (price_in * prompt + price_out * completion) / Decimal(1_000_000)
    abandoned = rows[abandoned_id]
    assert abandoned["status"] == "abandoned"
    assert seen <= abandoned["completion_tokens"] <= 40


async def test_a_request_that_failed_before_any_token_is_not_billed(server: ServerProcess,
                                                                    client: openai.AsyncOpenAI) -> None:
    before = len((await ledger_rows(server, [], timeout_s=0))["all"])
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x " * 9000}])
    await asyncio.sleep(1)
    assert len((await ledger_rows(server, [], timeout_s=0))["all"]) == before


async def _one_request(http: httpx.AsyncClient, key: str, index: int, rng: random.Random) -> tuple[str, int, int,
                                                                                                    str]:
    """A streamed, unstreamed or abandoned request to the echo model; returns (id, prompt, completion, kind)."""
    kind = rng.choice(["plain", "stream", "stream", "abandon"] if index % 2 else ["plain"])
    body = {"model": "meterway-echo", "messages": [{"role": "user", "content": "one two three " * (1 + index % 5)}],
            "max_tokens": 4 + index % 13 if kind != "abandon" else 400, "stream": kind != "plain",
            "stream_options": {"include_usage": True} if kind != "plain" else None}
    headers = {"Authorization": f"Bearer {key}"}
    if kind == "plain":
        reply = (await http.post("/v1/chat/completions", json=body, headers=headers)).json()
        return reply["id"], reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"], kind
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        request_id, usage, chunks = "", None, 0
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            request_id = chunk["id"]
            usage = chunk.get("usage") or usage
            chunks += 1
            if kind == "abandon" and chunks >= 3:
                return request_id, -1, chunks - 1, kind  # close mid-stream: billed what was generated
    assert usage is not None
    return request_id, usage["prompt_tokens"], usage["completion_tokens"], kind


@pytest.mark.battery(1)
async def test_conservation_over_2000_requests_across_20_keys(server: ServerProcess, figures: Figures) -> None:
    total = int(scaled(2000, 6000))  # the battery command runs 6,000
    keys = [str(server.create_key(f"cons-{i}-{uuid.uuid4().hex[:6]}")["secret"]) for i in range(20)]
    rng = random.Random(2026)
    limit = asyncio.Semaphore(24)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        async def run(index: int) -> tuple[str, int, int, str]:
            async with limit:
                return await _one_request(http, keys[index % 20], index, rng)

        results = await asyncio.gather(*(run(i) for i in range(total)))
    ids = [r[0] for r in results]
    assert len(set(ids)) == total
    ledger = await ledger_rows(server, ids, timeout_s=120)
    rows = ledger["by_id"]
    assert len(rows) == total, f"{total - len(rows)} requests missing from the ledger"
    assert len([r for r in ledger["all"] if r["request_id"] in rows]) == total  # one entry per request id
    served = [r for r in results if r[3] != "abandon"]
    assert sum(r[2] for r in served) == sum(rows[r[0]]["completion_tokens"] for r in served)
    assert sum(r[1] for r in served) == sum(rows[r[0]]["prompt_tokens"] for r in served)
    abandoned = [r for r in results if r[3] == "abandon"]
    figures.record(requests=len(ids), keys=20, streamed=sum(r[3] != "plain" for r in results),
                   abandoned=len(abandoned), ledger_entries=len(rows),
                   tokens_returned=sum(r[1] + r[2] for r in served),
                   tokens_billed=sum(rows[r[0]]["prompt_tokens"] + rows[r[0]]["completion_tokens"] for r in served),
                   duplicated=len([r for r in ledger["all"] if r["request_id"] in rows]) - len(rows))
    for request_id, _prompt, seen, _kind in abandoned:
        assert seen <= rows[request_id]["completion_tokens"] <= 400
