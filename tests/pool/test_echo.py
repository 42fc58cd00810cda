"""The built-in echo model: served in the gateway process by the same pool, with the same stream contract."""

from __future__ import annotations

import pytest

from meterway.errors import ModelOverloaded
from models.pool.api import ModelState
from tests.pool.conftest import ECHO, collect, job


async def test_echo_emits_max_tokens_and_counts_them(make_pool, specs) -> None:
    pool = await make_pool()
    assert pool.state(ECHO) is ModelState.COLD

    deltas = await collect(pool, job(specs[ECHO], (5, 6, 7), max_tokens=5))

    assert [d.text for d in deltas] == [" 5", " 6", " 7", " 5", " 6"]
    assert [d.completion_tokens for d in deltas] == [1, 2, 3, 4, 5]
    assert deltas[-1].finish_reason == "length" and deltas[-1].prompt_tokens == 3
    assert pool.state(ECHO) is ModelState.READY
    assert pool.metrics.value("meterway_pool_tokens_generated_total", model=ECHO) == 5


async def test_abandoned_stream_reports_what_was_generated(make_pool, specs) -> None:
    pool = await make_pool()
    stream = pool.generate(job(specs[ECHO], (1, 2), max_tokens=10_000))
    received = [await anext(stream) for _ in range(3)]

    await stream.aclose()

    final = stream.final.result()
    assert final.finish_reason == "cancelled"
    assert final.completion_tokens >= received[-1].completion_tokens == 3
    assert pool.metrics.value("meterway_pool_queue_depth", model=ECHO) == 0


async def test_full_queue_is_refused_at_once_with_retry_after(make_pool, specs) -> None:
    pool = await make_pool(queue_limit=2)
    running = [pool.generate(job(specs[ECHO], (1,), max_tokens=10_000)) for _ in range(2)]
    for stream in running:
        await stream.start()

    refused = pool.generate(job(specs[ECHO], (1,), max_tokens=4))
    with pytest.raises(ModelOverloaded) as caught:
        await anext(refused)

    assert caught.value.status == 429 and caught.value.retry_after
    assert refused.final.result().completion_tokens == 0
    for stream in running:
        await stream.aclose()
    assert len(await collect(pool, job(specs[ECHO], (1,), max_tokens=2))) == 2
