"""What only the shared store promises: state outlives a gateway, one round trip per admission, and a dead
gateway's slots lapse instead of leaking."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from meterway.errors import BudgetExhausted, RateLimited, Unavailable
from meterway.settings import LimitSettings, ServerSettings, Settings
from service.throttle import KeyLimits, LimitThrottle, Subject, build_throttle
from service.throttle.memory import MemoryStore
from service.throttle.redis_store import RedisStore

from .conftest import REDIS_URL, Clock, ThrottleFactory, _drop_keys

KEY = Subject("key-1", "tenant-1")


async def test_limits_survive_a_gateway_restart(redis_throttle: ThrottleFactory) -> None:
    limits = KeyLimits(rpm=5, budget_amount=Decimal("0.50"), budget_period="day")
    before = redis_throttle()
    for _ in range(5):
        admission = await before.admit(KEY, limits, 10, Decimal("0.05"))
        await admission.settle(10, Decimal("0.05"))
    await before.close()  # the gateway stops; a new process starts on the same Redis
    after = redis_throttle()
    with pytest.raises(RateLimited):
        await after.admit(KEY, limits, 10, Decimal("0.05"))
    budget_only = KeyLimits(budget_amount=Decimal("0.50"), budget_period="day")
    admitted = [await after.admit(KEY, budget_only, 10, Decimal("0.05")) for _ in range(5)]
    with pytest.raises(BudgetExhausted):
        await after.admit(KEY, budget_only, 10, Decimal("0.05"))
    assert len(admitted) == 5


EVERY_LIMIT = KeyLimits(rpm=1000, tpm=100_000, rpd=10_000, max_concurrency=50,
                        budget_amount=Decimal(100), budget_period="month",
                        tenant=KeyLimits(rpm=5000, tpm=500_000, max_concurrency=100,
                                         budget_amount=Decimal(1000), budget_period="day"))


async def test_one_round_trip_per_admission_settlements_ride_along(clock: Clock, prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL, settle_delay_s=3600)  # no timer: only riding along
    throttle = LimitThrottle(store, prefix=prefix, clock=clock)
    try:
        await throttle.start()
        warm = await throttle.admit(KEY, EVERY_LIMIT, 10, Decimal("0.01"))  # opens the connection
        await warm.settle(5, Decimal("0.005"))
        sent = store.round_trips
        for _ in range(10):
            admission = await throttle.admit(KEY, EVERY_LIMIT, 100, Decimal("0.10"))
            await admission.settle(40, Decimal("0.04"))
            await admission.release()  # already settled: nothing more
        assert store.round_trips - sent == 10
        await store.flush()  # the last settlement had no admission to ride with
        assert store.round_trips - sent == 11
        after = await throttle.admit(KEY, EVERY_LIMIT, 100, Decimal("0.10"))
        assert after.headers["x-ratelimit-remaining-tokens"] == str(100_000 - 5 - 10 * 40 - 100)
    finally:
        await throttle.close()
        await _drop_keys(prefix)


async def test_a_settlement_without_a_next_admission_is_sent_soon(redis_throttle: ThrottleFactory) -> None:
    limits = KeyLimits(max_concurrency=1)
    one, other = redis_throttle(), redis_throttle()  # two replicas
    held = await one.admit(KEY, limits, 1, Decimal(0))
    with pytest.raises(RateLimited):
        await other.admit(KEY, limits, 1, Decimal(0))
    await held.settle(1, Decimal(0))
    for _ in range(100):  # the timer sends it within milliseconds; allow a loaded machine a second
        await asyncio.sleep(0.01)
        if one.store.round_trips and not one.store._waiting:  # type: ignore[attr-defined]
            break
    admitted = await other.admit(KEY, limits, 1, Decimal(0))
    assert admitted.headers == {}


async def test_a_dead_gateways_slots_lapse(redis_throttle: ThrottleFactory, clock: Clock) -> None:
    limits = KeyLimits(max_concurrency=2)
    crashed = redis_throttle(lease_ttl_s=30)
    await crashed.admit(KEY, limits, 1, Decimal(0))
    await crashed.admit(KEY, limits, 1, Decimal(0))
    await crashed.close()  # never settles: the process died mid-request
    survivor = redis_throttle(lease_ttl_s=30)
    with pytest.raises(RateLimited) as refused:
        await survivor.admit(KEY, limits, 1, Decimal(0))
    assert refused.value.code == "concurrency_limit_exceeded"
    clock.advance(31)
    held = [await survivor.admit(KEY, limits, 1, Decimal(0)) for _ in range(2)]
    assert len(held) == 2


async def test_an_unreachable_store_refuses_with_503(clock: Clock) -> None:
    throttle = LimitThrottle(RedisStore.from_url("redis://127.0.0.1:1/0"), prefix="unreachable", clock=clock)
    try:
        with pytest.raises(Unavailable) as refused:
            await throttle.admit(KEY, KeyLimits(rpm=1), 1, Decimal(0))
        assert (refused.value.status, refused.value.code) == (503, "limits_unavailable")
    finally:
        await throttle.close()


async def test_settings_pick_the_store() -> None:
    in_memory = build_throttle(Settings())
    shared = build_throttle(Settings(limits=LimitSettings(redis_url=REDIS_URL),
                                     server=ServerSettings(request_timeout_s=120)))
    try:
        assert isinstance(in_memory.store, MemoryStore)
        assert isinstance(shared.store, RedisStore)
    finally:
        await in_memory.close()
        await shared.close()
    with pytest.raises(ValueError, match="no limit store"):
        build_throttle(Settings(limits=LimitSettings(redis_url="memcached://127.0.0.1")))


async def test_a_request_cancelled_during_admission_keeps_nothing(redis_throttle: ThrottleFactory) -> None:
    throttle = redis_throttle()
    limits = KeyLimits(rpm=10, tpm=1000, max_concurrency=1)
    admitting = asyncio.create_task(throttle.admit(KEY, limits, 400, Decimal(0)))
    await asyncio.sleep(0)  # its call is queued and goes out on the next turn
    admitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitting
    await throttle.store.flush()  # type: ignore[attr-defined]  # its reply came; the give-back went out
    later = await throttle.admit(KEY, limits, 400, Decimal(0))  # the slot and the tokens came back
    assert later.headers["x-ratelimit-remaining-tokens"] == "600"
    assert later.headers["x-ratelimit-remaining-requests"] == "9"  # it never ran: it counts for nothing


async def test_concurrent_admissions_share_round_trips(redis_throttle: ThrottleFactory) -> None:
    throttle = redis_throttle()
    await throttle.start()
    limits = KeyLimits(rpm=100, max_concurrency=100)
    await (await throttle.admit(KEY, limits, 1, Decimal(0))).release()
    sent = throttle.store.round_trips
    admissions = await asyncio.gather(*[throttle.admit(KEY, limits, 1, Decimal(0)) for _ in range(50)])
    assert throttle.store.round_trips - sent < 50  # one loop turn's admissions share a write and a script call
    remaining = sorted(int(admission.headers["x-ratelimit-remaining-requests"]) for admission in admissions)
    assert remaining == list(range(49, 99))  # 1 + 50 of 100 used, one at a time


async def test_a_burst_in_one_call_is_admitted_one_at_a_time(redis_throttle: ThrottleFactory) -> None:
    throttle = redis_throttle()
    await throttle.start()
    limits = KeyLimits(rpm=100, max_concurrency=3)
    burst = await asyncio.gather(*[throttle.admit(KEY, limits, 1, Decimal(0)) for _ in range(5)],
                                 return_exceptions=True)
    admitted = [outcome for outcome in burst if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in burst if isinstance(outcome, RateLimited)]
    assert (len(admitted), len(refused)) == (3, 2)
    assert {error.code for error in refused} == {"concurrency_limit_exceeded"}
    for admission in admitted:
        await admission.release()
    await throttle.store.flush()  # type: ignore[attr-defined]
    later = await throttle.admit(KEY, limits, 1, Decimal(0))  # the slots came back; refusals took nothing
    assert later.headers["x-ratelimit-remaining-requests"] == "96"


async def test_a_redis_that_lost_the_script_still_admits(redis_throttle: ThrottleFactory) -> None:
    throttle = redis_throttle()
    await throttle.start()
    limits = KeyLimits(rpm=10, max_concurrency=5)
    first = await throttle.admit(KEY, limits, 1, Decimal(0))
    await throttle.store.client.script_flush()  # type: ignore[attr-defined]  # as after a Redis restart
    second = await throttle.admit(KEY, limits, 1, Decimal(0))  # NOSCRIPT, then sent again with the script
    third = await throttle.admit(KEY, limits, 1, Decimal(0))  # the script is loaded again
    assert [a.headers["x-ratelimit-remaining-requests"] for a in (first, second, third)] == ["9", "8", "7"]
