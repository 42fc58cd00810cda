"""/metrics as an operator charts it: vLLM's serving set, counters that are counters, a token when set."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    import openai

    from tests.conftest import ServerFactory
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def _value(text: str, name: str, model: str = MODEL) -> float:
    found = re.search(rf'^{re.escape(name)}{{model_name="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_the_serving_set_counts_what_usage_reports(server: ServerProcess,
                                                         client: openai.AsyncOpenAI) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    reply = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=6, temperature=0)
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                  max_tokens=6, temperature=0, stream=True,
                                                  stream_options={"include_usage": True})
    streamed = [chunk async for chunk in stream][-1].usage
    after = httpx.get(f"{server.url}/metrics").text
    assert reply.usage is not None and streamed is not None
    assert (_value(after, "meterway:prompt_tokens_total") - _value(before, "meterway:prompt_tokens_total")
            == reply.usage.prompt_tokens + streamed.prompt_tokens)
    assert (_value(after, "meterway:generation_tokens_total") - _value(before, "meterway:generation_tokens_total")
            == reply.usage.completion_tokens + streamed.completion_tokens)
    for histogram in ("meterway:time_to_first_token_seconds", "meterway:inter_token_latency_seconds",
                      "meterway:e2e_request_latency_seconds"):
        assert _value(after, f"{histogram}_count") - _value(before, f"{histogram}_count") >= 2, histogram
    assert "# TYPE meterway:num_requests_running gauge" in after
    assert re.search(r"^# TYPE meterway:prefix_cache_hits(_total)? counter$", after, re.M)
    assert "meterway_pool_engine_stat" not in after  # engine counters are counters now, not a gauge with a label


async def test_engine_counters_are_counters(server: ServerProcess, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    types: dict[str, str] = {}
    for _ in range(60):  # the pool samples each ready worker's stats every few seconds
        text = httpx.get(f"{server.url}/metrics").text
        types = dict(re.findall(r"^# TYPE (meterway_engine_\S+) (\S+)$", text, re.M))
        if types:
            break
        await asyncio.sleep(0.5)
    assert types.get("meterway_engine_tokens_generated_total") == "counter", types
    assert types.get("meterway_engine_batch_size") == "gauge", types


def test_a_metrics_token_guards_metrics(start_server: ServerFactory) -> None:
    gateway = start_server({"METERWAY_METRICS_TOKEN": "scrape-secret"})
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    assert httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    answer = httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer scrape-secret"})
    assert answer.status_code == 200 and "meterway_http_requests_total" in answer.text
