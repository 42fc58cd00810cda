"""Dedicated capacity in the pool: a deployment's instances stay loaded, count against the memory budget, are
refused when they cannot fit, come back when their worker dies, and drain before they stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from meterway.errors import InsufficientCapacity, ModelOverloaded, Unavailable
from models.pool.api import EmbeddingJob, ModelState
from tests.pool.conftest import ECHO, MINILM, SMOLLM, SMOLLM_BF16, collect, job, wait_for_state

if TYPE_CHECKING:
    from models.catalog import ModelSpec
    from models.pool.api import DeltaStream
    from models.pool.local import LocalPool
    from models.runtime.api import TokenDelta
    from tests.pool.conftest import PoolFactory


async def wait_ready(pool: LocalPool, group: str, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        view = pool.instances(group)
        ready = [i for i in view.instances if i.state == "ready"] if view else []
        if len(ready) == count and view is not None and len(view.instances) == count:
            return
        assert time.monotonic() < deadline, f"{group} did not get {count} ready instances: {view}"
        await asyncio.sleep(0.05)


async def test_instances_stay_loaded_and_hold_their_memory(make_pool: PoolFactory, specs: dict[str, ModelSpec],
                                                           prompt_ids: tuple[int, ...]) -> None:
    pool = await make_pool(memory_budget_mb=1000, idle_ttl_s=0.2)
    pool.provision("support/blue", specs[SMOLLM_BF16], 1)
    await wait_ready(pool, "support/blue", 1)
    deltas = await collect(pool, replace(job(specs[SMOLLM_BF16], prompt_ids), group="support/blue"))
    assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 4
    # The shared model of the same weights is a different worker: the instance is the deployment's own.
    assert pool.state(SMOLLM_BF16) is ModelState.COLD

    with pytest.raises(ModelOverloaded, match="held by dedicated deployments"):
        await collect(pool, job(specs[SMOLLM], prompt_ids))  # 768 MB beside the instance's 432: no room
    result = await pool.embed(EmbeddingJob("e1", specs[MINILM], ((101, 7592, 102),)))
    assert len(result.vectors) == 1  # what fits still loads on demand

    await asyncio.sleep(1.0)  # well past idle_ttl_s: shared models unload, the instance does not
    await wait_for_state(pool, MINILM, ModelState.COLD)
    view = pool.instances("support/blue")
    assert view is not None and [i.state for i in view.instances] == ["ready"]


async def test_instances_that_cannot_fit_are_refused_and_nothing_changes(
        make_pool: PoolFactory, specs: dict[str, ModelSpec]) -> None:
    pool = await make_pool(memory_budget_mb=1000)
    pool.provision("support/blue", specs[SMOLLM_BF16], 1)
    with pytest.raises(InsufficientCapacity, match="3 instances of smollm2-135m-instruct-bf16") as refused:
        pool.provision("support/blue", specs[SMOLLM_BF16], 3)
    assert refused.value.status == 409 and refused.value.param == "instance_count"
    with pytest.raises(InsufficientCapacity, match="held by other dedicated deployments"):
        pool.provision("other/green", specs[SMOLLM], 1)
    view = pool.instances("support/blue")
    assert view is not None and len(view.instances) == 1
    assert pool.instances("other/green") is None


async def test_a_killed_instance_comes_back_and_logs_say_so(make_pool: PoolFactory, specs: dict[str, ModelSpec],
                                                           prompt_ids: tuple[int, ...]) -> None:
    pool = await make_pool()
    pool.provision("support/blue", specs[SMOLLM_BF16], 1)
    await wait_ready(pool, "support/blue", 1)
    view = pool.instances("support/blue")
    assert view is not None and view.instances[0].pid is not None
    first_pid = view.instances[0].pid
    os.kill(first_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        view = pool.instances("support/blue")
        assert view is not None
        if view.instances[0].state == "ready" and view.instances[0].pid not in (None, first_pid):
            break
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.1)
    deltas = await collect(pool, replace(job(specs[SMOLLM_BF16], prompt_ids), group="support/blue"))
    assert deltas[-1].completion_tokens == 4
    logs = "\n".join(pool.instance_logs("support/blue"))
    assert "[support/blue#0] instance added" in logs
    assert f"worker crashed (pid {first_pid})" in logs
    assert "model loaded" in logs  # the worker's own log line, not only the pool's events
    assert logs.count("model ready in") == 2


async def test_scaling_down_drains_before_it_stops(make_pool: PoolFactory, specs: dict[str, ModelSpec]) -> None:
    pool = await make_pool(idle_ttl_s=0.4)  # supervision ticks every 0.1 s
    echo = specs[ECHO]
    pool.provision("support/echo", echo, 3)
    await wait_ready(pool, "support/echo", 3)
    busy = pool.generate(replace(job(echo, tuple(range(3, 40)), max_tokens=30), group="support/echo"))
    await busy.start()
    pool.provision("support/echo", echo, 1)  # the idle two stop at once; the busy one stays
    view = pool.instances("support/echo")
    assert view is not None and [(i.state, i.in_flight) for i in view.instances] == [("ready", 1)]
    assert [i.state for i in view.stopped] == ["stopped", "stopped"]
    assert (await collect_stream(busy))[-1].finish_reason == "length"

    last = pool.generate(replace(job(echo, (5, 6), max_tokens=30), group="support/echo"))
    await last.start()
    pool.provision("support/echo", echo, 0)
    view = pool.instances("support/echo")
    assert view is not None and [(i.state, i.in_flight) for i in view.instances] == [("stopping", 1)]
    assert (await collect_stream(last))[-1].finish_reason == "length"  # retired, it still finished its work
    await asyncio.sleep(0.4)
    view = pool.instances("support/echo")
    assert view is not None and not view.instances and len(view.stopped) == 3
    assert all(i.ended_at is not None and i.ended_at >= i.started_at for i in view.stopped)
    with pytest.raises(Unavailable, match="holds no instances"):
        await collect(pool, replace(job(echo, (5,)), group="support/echo"))


async def collect_stream(stream: DeltaStream) -> list[TokenDelta]:
    async with asyncio.timeout(60):
        return [delta async for delta in stream]
