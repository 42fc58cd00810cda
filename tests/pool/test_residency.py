"""What stays loaded: LRU eviction under a memory budget, scale to zero, and a worker killed mid-stream."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from meterway.errors import ModelOverloaded, WorkerCrashed
from models.pool.api import EmbeddingJob, ModelState
from tests.pool.conftest import MINILM, SMOLLM, SMOLLM_BF16, collect, job, wait_for_state

pytestmark = pytest.mark.slow

# SmolLM2 is estimated at about 800 MB at fp32 and 450 MB at bf16 (weights, the packed copy of its tied LM
# head, a 64 MB prefix cache): this budget holds either one, never both.
ONE_SMOLLM_MB = 1000


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_loading_past_the_budget_evicts_the_least_recently_used_idle_model(make_pool, specs,
                                                                                prompt_ids) -> None:
    pool = await make_pool(memory_budget_mb=ONE_SMOLLM_MB)
    await collect(pool, job(specs[SMOLLM], prompt_ids))
    fp32_pid = pool.worker_pid(SMOLLM)
    assert fp32_pid is not None

    deltas = await collect(pool, job(specs[SMOLLM_BF16], prompt_ids))

    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.state(SMOLLM) is ModelState.COLD and pool.state(SMOLLM_BF16) is ModelState.READY
    assert pool.metrics.value("meterway_pool_evictions_total", model=SMOLLM) == 1
    assert gone(fp32_pid)
    assert pool.metrics.value("meterway_pool_worker_rss_bytes", model=SMOLLM) == 0


async def test_a_model_with_a_request_in_flight_is_never_evicted(make_pool, specs, prompt_ids) -> None:
    pool = await make_pool(memory_budget_mb=ONE_SMOLLM_MB)
    busy = pool.generate(job(specs[SMOLLM_BF16], prompt_ids, max_tokens=200))
    await anext(busy)

    with pytest.raises(ModelOverloaded) as caught:
        await collect(pool, job(specs[SMOLLM], prompt_ids))

    assert caught.value.status == 429 and caught.value.retry_after
    assert pool.state(SMOLLM_BF16) is ModelState.READY and pool.state(SMOLLM) is ModelState.COLD
    assert pool.metrics.value("meterway_pool_evictions_total", model=SMOLLM_BF16) == 0
    await busy.aclose()
    assert busy.final.result().finish_reason == "cancelled"


async def test_idle_model_scales_to_zero_and_cold_starts_again(make_pool, specs, prompt_ids) -> None:
    pool = await make_pool(idle_ttl_s=1.0)
    await collect(pool, job(specs[SMOLLM_BF16], prompt_ids))
    pid = pool.worker_pid(SMOLLM_BF16)
    assert pid is not None and pool.metrics.value("meterway_pool_worker_rss_bytes", model=SMOLLM_BF16) > 0

    await wait_for_state(pool, SMOLLM_BF16, ModelState.COLD)

    assert pool.metrics.value("meterway_pool_idle_unloads_total", model=SMOLLM_BF16) == 1
    assert pool.metrics.value("meterway_pool_worker_rss_bytes", model=SMOLLM_BF16) == 0
    await wait_for_gone(pid)
    deltas = await collect(pool, job(specs[SMOLLM_BF16], prompt_ids))
    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.metrics.value("meterway_pool_loads_total", model=SMOLLM_BF16) == 2
    assert pool.worker_pid(SMOLLM_BF16) not in {None, pid}


async def test_worker_killed_mid_stream_ends_it_with_an_error_and_the_next_request_works(make_pool, specs,
                                                                                        prompt_ids) -> None:
    pool = await make_pool()
    stream = pool.generate(job(specs[SMOLLM], prompt_ids, max_tokens=200))
    received = [await anext(stream) for _ in range(3)]
    pid = pool.worker_pid(SMOLLM)
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    rest = [delta async for delta in stream]

    final = rest[-1] if rest else received[-1]
    assert final.finish_reason == "error" and final.error and "crashed" in final.error
    assert final.completion_tokens >= received[-1].completion_tokens >= 3
    assert stream.final.result() == final
    await wait_for_state(pool, SMOLLM, ModelState.COLD)
    assert pool.metrics.value("meterway_pool_worker_crashes_total", model=SMOLLM) == 1
    deltas = await collect(pool, job(specs[SMOLLM], prompt_ids))
    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.worker_pid(SMOLLM) not in {None, pid}


async def test_a_hung_worker_fails_its_call_is_stopped_and_the_next_request_gets_a_fresh_one(make_pool,
                                                                                           specs) -> None:
    pool = await make_pool(call_timeout_s=2.0)
    embedding = EmbeddingJob("emb-hung", specs[MINILM], ((101, 7592, 102),))
    assert (await pool.embed(embedding)).prompt_tokens == 3
    pid = pool.worker_pid(MINILM)
    assert pid is not None

    os.kill(pid, signal.SIGSTOP)  # alive but silent: the state a deadlocked worker is in
    with pytest.raises(WorkerCrashed) as caught:
        await pool.embed(embedding)

    assert "did not answer" in caught.value.message
    await wait_for_gone(pid)
    await wait_for_state(pool, MINILM, ModelState.COLD)
    assert (await pool.embed(embedding)).prompt_tokens == 3
    assert pool.worker_pid(MINILM) not in {None, pid}


async def wait_for_gone(pid: int) -> None:
    import asyncio

    for _ in range(200):
        if gone(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker {pid} is still running")
