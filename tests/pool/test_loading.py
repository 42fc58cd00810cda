"""On-demand loading of real models: cold start, single flight, the load-wait limit, bounded queues."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from meterway.errors import ModelLoading, ModelOverloaded
from models.pool import local
from models.pool.api import ModelState
from tests.pool.conftest import SMOLLM, collect, job, wait_for_state

pytestmark = pytest.mark.slow


async def test_first_request_loads_a_cold_model_once_for_all_concurrent_requests(make_pool, specs,
                                                                                 prompt_ids) -> None:
    pool = await make_pool()
    assert pool.state(SMOLLM) is ModelState.COLD

    first = asyncio.create_task(collect(pool, job(specs[SMOLLM], prompt_ids)))
    await wait_for_state(pool, SMOLLM, ModelState.LOADING)
    rest = [asyncio.create_task(collect(pool, job(specs[SMOLLM], prompt_ids))) for _ in range(4)]
    results = await asyncio.gather(first, *rest)

    assert pool.state(SMOLLM) is ModelState.READY
    assert pool.metrics.value("meterway_pool_loads_total", model=SMOLLM) == 1
    assert pool.metrics.value("meterway_pool_cold_start_seconds_count", model=SMOLLM) == 1
    for deltas in results:
        final = deltas[-1]
        assert final.finish_reason in {"length", "stop"}
        assert final.prompt_tokens == len(prompt_ids)
        assert 1 <= final.completion_tokens <= 4
    # Greedy decoding of one prompt: every concurrent request got the same answer.
    assert len({"".join(d.text for d in deltas) for deltas in results}) == 1


async def test_request_past_load_wait_gets_model_loading_while_the_load_goes_on(make_pool, specs,
                                                                               prompt_ids) -> None:
    pool = await make_pool(load_wait_s=0.01)

    with pytest.raises(ModelLoading) as caught:
        await collect(pool, job(specs[SMOLLM], prompt_ids))

    assert caught.value.status == 503 and caught.value.retry_after and caught.value.retry_after >= 1
    assert pool.state(SMOLLM) is ModelState.LOADING
    await wait_for_state(pool, SMOLLM, ModelState.READY)
    deltas = await collect(pool, job(specs[SMOLLM], prompt_ids))
    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.metrics.value("meterway_pool_loads_total", model=SMOLLM) == 1


async def test_queue_past_its_limit_is_refused_and_abandoned_streams_report_their_tokens(make_pool, specs,
                                                                                        prompt_ids) -> None:
    pool = await make_pool(queue_limit=2)
    running = [pool.generate(job(specs[SMOLLM], prompt_ids, max_tokens=200)) for _ in range(2)]
    received = [await anext(stream) for stream in running]

    with pytest.raises(ModelOverloaded) as caught:
        await collect(pool, job(specs[SMOLLM], prompt_ids))
    assert caught.value.status == 429 and caught.value.retry_after

    for stream, first in zip(running, received, strict=True):
        await stream.aclose()
        final = stream.final.result()
        assert final.finish_reason == "cancelled"
        assert first.completion_tokens <= final.completion_tokens < 200
    assert pool.metrics.value("meterway_pool_queue_depth", model=SMOLLM) == 0
    deltas = await collect(pool, job(specs[SMOLLM], prompt_ids))
    assert deltas[-1].finish_reason in {"length", "stop"}


async def test_a_standby_worker_takes_the_cold_start_and_the_next_one_starts_after(make_pool, specs,
                                                                                  prompt_ids) -> None:
    pool = await make_pool(standby=True)
    standby = await standby_pid(pool)

    deltas = await collect(pool, job(specs[SMOLLM], prompt_ids))

    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.worker_pid(SMOLLM) == standby
    following = await standby_pid(pool)
    assert following != standby
    await pool.close()
    assert not psutil.pid_exists(following) or psutil.Process(following).status() == psutil.STATUS_ZOMBIE


async def test_the_next_standby_waits_until_no_request_is_running(make_pool, specs, prompt_ids,
                                                                 monkeypatch) -> None:
    """Its imports would take the cores from the streams of the model just loaded."""
    monkeypatch.setattr(local, "STANDBY_REFILL_DELAY_S", 0.0)
    pool = await make_pool(standby=True)
    await standby_pid(pool)

    async with pool.generate(job(specs[SMOLLM], prompt_ids, max_tokens=400)) as stream:
        first = await anext(stream)
        assert first.finish_reason is None
        await asyncio.sleep(2.5)  # the supervisor looks every second
        assert not pool.standby.started
    # The stream was cancelled on leaving the block: the pool is quiet, so the next standby starts.
    await standby_pid(pool)


async def test_a_pool_that_never_gets_quiet_still_gets_its_next_standby(make_pool, specs, prompt_ids,
                                                                         monkeypatch) -> None:
    """Else a second cold model under steady traffic would wait for a fresh worker's imports."""
    monkeypatch.setattr(local, "STANDBY_REFILL_DELAY_S", 0.0)
    monkeypatch.setattr(local, "STANDBY_REFILL_MAX_WAIT_S", 1.0)
    pool = await make_pool(standby=True)
    first_standby = await standby_pid(pool)

    async with pool.generate(job(specs[SMOLLM], prompt_ids, max_tokens=400)) as stream:
        assert (await anext(stream)).finish_reason is None
        assert pool.worker_pid(SMOLLM) == first_standby
        assert await standby_pid(pool) != first_standby
        # The request is still running or waiting (it leaves the count once, when it ends): the pool was
        # never quiet.
        assert pool.metrics.value("meterway_pool_queue_depth", model=SMOLLM) == 1


async def standby_pid(pool) -> int:
    for _ in range(600):
        if pool.standby.pid is not None:
            return pool.standby.pid
        await asyncio.sleep(0.05)
    raise AssertionError("no standby worker was started")
