"""Admission on both real stores: limits hold under racing requests, windows admit close to their limit,
slots come back on every exit, and callers see OpenAI's headers and error codes."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from meterway.errors import BudgetExhausted, MeterwayError, RateLimited
from service.throttle import Admission, KeyLimits, Subject

if TYPE_CHECKING:
    from .conftest import Clock, ThrottleFactory

SIX_HEADERS = {f"x-ratelimit-{what}-{dimension}" for what in ("limit", "remaining", "reset")
               for dimension in ("requests", "tokens")}
KEY = Subject("key-1", "tenant-1")


async def _admit_all(throttle_calls: list[Any]) -> tuple[list[Admission], list[MeterwayError]]:
    results = await asyncio.gather(*throttle_calls, return_exceptions=True)
    admitted = [result for result in results if isinstance(result, Admission)]
    refused = [result for result in results if isinstance(result, MeterwayError)]
    assert len(admitted) + len(refused) == len(results), [r for r in results if not isinstance(r, Admission)]
    return admitted, refused


@pytest.mark.parametrize("spent_before", [Decimal(0), Decimal("0.30")], ids=["new-key", "existing-key"])
async def test_budget_race_admits_no_more_than_the_budget_covers(make_throttle: ThrottleFactory,
                                                                  spent_before: Decimal) -> None:
    limits = KeyLimits(budget_amount=Decimal("1.00"), budget_period="month")
    replicas = [make_throttle(), make_throttle()]  # two gateways (on Redis: two connections pools)
    if spent_before:
        earlier = await replicas[0].admit(KEY, limits, 10, spent_before)
        await earlier.settle(10, spent_before)
    calls = [replicas[i % 2].admit(KEY, limits, 10, Decimal("0.10")) for i in range(100)]
    admitted, refused = await _admit_all(calls)
    covered = int((Decimal("1.00") - spent_before) / Decimal("0.10"))
    assert len(admitted) == covered
    assert spent_before + len(admitted) * Decimal("0.10") <= Decimal("1.00")
    assert {(error.status, error.code) for error in refused} == {(402, "insufficient_quota")}
    assert all(error.retry_after and error.retry_after > 0 for error in refused)
    for admission in admitted:
        await admission.settle(10, Decimal("0.10"))
    with pytest.raises(BudgetExhausted):
        await replicas[1].admit(KEY, limits, 0, Decimal(0))


async def test_settling_below_the_reservation_returns_the_money(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(budget_amount=Decimal("1.00"), budget_period="day")
    held = [await throttle.admit(KEY, limits, 100, Decimal("0.25")) for _ in range(4)]
    with pytest.raises(BudgetExhausted):
        await throttle.admit(KEY, limits, 100, Decimal("0.25"))
    for admission in held:
        await admission.settle(20, Decimal("0.05"))
        await admission.settle(20, Decimal("0.05"))  # twice: still given back once
    # 0.20 spent; 0.80 left covers three more reservations of 0.25, not four.
    more, refused = await _admit_all([throttle.admit(KEY, limits, 100, Decimal("0.25")) for _ in range(4)])
    assert (len(more), len(refused)) == (3, 1)


async def test_rpm_window_driven_at_twice_the_limit(make_throttle: ThrottleFactory, clock: Clock) -> None:
    throttle = make_throttle()
    limit = 20
    admitted_per_window = await _drive(throttle, clock, KeyLimits(rpm=limit), tokens=1, used=1,
                                       per_minute=2 * limit, windows=5)
    for window in admitted_per_window:
        assert 0.9 * limit <= window <= limit, admitted_per_window


async def test_tpm_window_driven_at_twice_the_limit(make_throttle: ThrottleFactory, clock: Clock) -> None:
    throttle = make_throttle()
    limit = 1000
    tokens_per_window = await _drive(throttle, clock, KeyLimits(tpm=limit), tokens=100, used=100,
                                     per_minute=20, windows=5)
    for tokens in tokens_per_window:
        assert 0.9 * limit <= tokens <= limit, tokens_per_window


async def test_tpm_counts_what_was_used_not_what_was_reserved(make_throttle: ThrottleFactory,
                                                              clock: Clock) -> None:
    throttle = make_throttle()
    limit = 1000
    used_per_window = await _drive(throttle, clock, KeyLimits(tpm=limit), tokens=200, used=50,
                                   per_minute=60, windows=3)
    for used in used_per_window:
        # Only the last reservation's headroom (200) may stay unused at the end of a window.
        assert limit - 200 <= used <= limit, used_per_window


async def _drive(throttle, clock: Clock, limits: KeyLimits, *, tokens: int, used: int, per_minute: int,
                 windows: int) -> list[int]:
    """Offer ``per_minute`` evenly spaced requests for ``windows`` minutes; return units used per minute."""
    totals = []
    for _ in range(windows):
        total = 0
        for _ in range(per_minute):
            try:
                admission = await throttle.admit(KEY, limits, tokens, Decimal(0))
            except RateLimited as error:
                assert error.retry_after is not None and error.retry_after > 0
            else:
                await admission.settle(used, Decimal(0))
                total += used
            clock.advance(60 / per_minute)
        totals.append(total)
    return totals


async def test_racing_requests_never_pass_the_rpm(make_throttle: ThrottleFactory) -> None:
    replicas = [make_throttle(), make_throttle()]
    calls = [replicas[i % 2].admit(KEY, KeyLimits(rpm=30, tpm=3000), 100, Decimal(0)) for i in range(100)]
    admitted, refused = await _admit_all(calls)
    assert len(admitted) == 30
    assert {error.code for error in refused} == {"rate_limit_exceeded"}


async def test_concurrency_slots_come_back_on_every_exit(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(max_concurrency=3)
    first = await _admit_all([throttle.admit(KEY, limits, 10, Decimal(0)) for _ in range(10)])
    held, refused = first
    assert len(held) == 3
    assert {(error.status, error.code) for error in refused} == {(429, "concurrency_limit_exceeded")}
    await held[0].settle(5, Decimal(0))        # completed
    await held[1].release()                    # failed before any output
    await held[1].settle(5, Decimal(0))        # a second exit path: no double release
    await _cancelled_stream(held[2])           # client went away mid-stream
    again, _ = await _admit_all([throttle.admit(KEY, limits, 10, Decimal(0)) for _ in range(10)])
    assert len(again) == 3
    for admission in again:
        await admission.release()


async def _cancelled_stream(admission: Admission) -> None:
    """A stream that holds its admission in ``async with`` and is cancelled while waiting for tokens."""
    started = asyncio.Event()

    async def stream() -> None:
        async with admission:
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stream())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admission.settled


async def test_responses_carry_the_six_headers(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(rpm=2, tpm=1000, rpd=100)
    first = await throttle.admit(KEY, limits, 300, Decimal(0))
    assert set(first.headers) == SIX_HEADERS
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "700"
    assert first.headers["x-ratelimit-reset-requests"] == "2m0s"
    await first.settle(100, Decimal(0))
    second = await throttle.admit(KEY, limits, 300, Decimal(0))
    assert second.headers["x-ratelimit-remaining-tokens"] == "600"
    with pytest.raises(RateLimited) as refused:
        await throttle.admit(KEY, limits, 300, Decimal(0))
    error = refused.value
    assert (error.status, error.code, error.type) == (429, "rate_limit_exceeded", "requests")
    assert set(SIX_HEADERS) <= set(error.headers)
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.retry_after == pytest.approx(90.0)  # the next window, once this one has half decayed


async def test_token_refusals_name_the_token_limit(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(tpm=1000)
    await throttle.admit(KEY, limits, 800, Decimal(0))
    with pytest.raises(RateLimited) as refused:
        await throttle.admit(KEY, limits, 300, Decimal(0))
    assert (refused.value.code, refused.value.type) == ("tokens_per_min", "tokens")
    assert refused.value.retry_after is not None
    with pytest.raises(RateLimited) as too_large:
        await throttle.admit(KEY, limits, 1001, Decimal(0))
    assert too_large.value.retry_after is None
    assert too_large.value.headers["x-should-retry"] == "false"


async def test_requests_per_day(make_throttle: ThrottleFactory, clock: Clock) -> None:
    throttle = make_throttle()
    limits = KeyLimits(rpd=3)
    for _ in range(3):
        await throttle.admit(KEY, limits, 1, Decimal(0))
        clock.advance(3600)
    with pytest.raises(RateLimited) as refused:
        await throttle.admit(KEY, limits, 1, Decimal(0))
    assert refused.value.code == "requests_per_day"
    assert refused.value.retry_after is not None and refused.value.retry_after > 3600


async def test_the_tenant_ceiling_is_shared_by_its_keys(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(rpm=10, tenant=KeyLimits(rpm=15))
    keys = [Subject(f"key-{i}", "tenant-shared") for i in range(3)]
    calls = [throttle.admit(keys[i % 3], limits, 1, Decimal(0)) for i in range(30)]
    admitted, refused = await _admit_all(calls)
    assert len(admitted) == 15
    assert all("tenant tenant-shared" in error.message for error in refused)
    other = await throttle.admit(Subject("key-9", "tenant-other"), limits, 1, Decimal(0))
    assert other.headers["x-ratelimit-remaining-requests"] == "9"


async def test_a_refused_admission_reserves_nothing(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    limits = KeyLimits(rpm=100, tpm=1000)
    await throttle.admit(KEY, limits, 900, Decimal(0))
    for _ in range(5):
        with pytest.raises(RateLimited):
            await throttle.admit(KEY, limits, 500, Decimal(0))  # RPM fits, TPM does not: RPM stays untouched
    admission = await throttle.admit(KEY, limits, 100, Decimal(0))
    assert admission.headers["x-ratelimit-remaining-requests"] == "98"


async def test_a_key_without_limits_needs_no_store(make_throttle: ThrottleFactory) -> None:
    throttle = make_throttle()
    before = throttle.store.round_trips
    admission = await throttle.admit(KEY, KeyLimits(), 10**6, Decimal(1000))
    await admission.settle(10, Decimal(1))
    assert admission.headers == {}
    assert throttle.store.round_trips == before
