"""Throttles over both real stores (this process's memory, the machine's Redis), each test on its own keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from service.throttle import LimitThrottle
from service.throttle.memory import MemoryStore
from service.throttle.redis_store import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"
#: 2026-11-25 10:00:00 UTC, the start of a minute: window arithmetic in tests is exact.
T0 = 1_795_600_800.0


class Clock:
    """A clock the test moves by hand, so that windows pass without waiting."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ThrottleFactory = Callable[..., LimitThrottle]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def prefix() -> str:
    """Storage key prefix unique to the test, so that tests never share counters."""
    return f"mwtest-{uuid.uuid4().hex[:12]}"


async def _drop_keys(prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL)
    try:
        keys = [key async for key in store.client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await store.client.delete(*keys)
    finally:
        await store.close()


@pytest.fixture(params=["memory", "redis"])
async def make_throttle(request: pytest.FixtureRequest, clock: Clock,
                        prefix: str) -> AsyncIterator[ThrottleFactory]:
    """Build throttles on one kind of store; all throttles of a Redis test share that Redis (replicas)."""
    made: list[LimitThrottle] = []
    memory = MemoryStore()

    def make(**options: Any) -> LimitThrottle:
        store = memory if request.param == "memory" else RedisStore.from_url(REDIS_URL)
        throttle = LimitThrottle(store, prefix=prefix, clock=options.pop("clock", clock), **options)
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        if throttle.store is not memory:
            await throttle.close()
    await memory.close()
    if request.param == "redis":
        await _drop_keys(prefix)


@pytest.fixture
async def redis_throttle(clock: Clock, prefix: str) -> AsyncIterator[ThrottleFactory]:
    """Throttles on the machine's Redis only (restarts, round trips)."""
    made: list[LimitThrottle] = []

    def make(**options: Any) -> LimitThrottle:
        throttle = LimitThrottle(RedisStore.from_url(REDIS_URL), prefix=prefix, clock=clock, **options)
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        await throttle.close()
    await _drop_keys(prefix)
