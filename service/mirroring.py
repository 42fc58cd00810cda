"""Mirrored traffic: a sampled request's copy runs on the mirror deployment, and its answer is dropped.

A copy starts only after the primary request was admitted and had its first token; it runs in a task of
its own, so it can never delay, fail or change the primary response. It is metered (usage events with the
mirror deployment and ``billable = false``: recorded, charged to no one) but takes nothing from the
caller's limits. A mirror deployment with ``max_inflight`` copies under way is overloaded: further copies
are dropped and counted (``meterway_mirror_requests_total{outcome="dropped"}``).
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from service.inference import Run, usage_event

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from decimal import Decimal

    from prometheus_client import CollectorRegistry

    from billing.money import Price
    from models.pool.api import ModelPool
    from service.auth import Principal
    from service.inference import Placement, UsageRecorder
    from service.jobs import EmbeddingPlan, Plan

log = structlog.get_logger("meterway.mirroring")


class _Unthrottled:
    """A mirrored copy's admission: it reserves nothing from the caller's limits."""

    headers: dict[str, str] = {}

    async def settle(self, tokens_used: int, cost_used: Decimal) -> None:
        return None

    async def release(self) -> None:
        return None


class Mirrors:
    """Runs mirrored copies, at most ``max_inflight`` per mirror deployment at once."""

    def __init__(self, pool: ModelPool, meter: UsageRecorder, timeout_s: float, max_inflight: int,
                 registry: CollectorRegistry) -> None:
        self._pool, self._meter, self._timeout_s, self._max = pool, meter, timeout_s, max_inflight
        self._inflight: Tally[tuple[str, str]] = Tally()
        self._tasks: set[asyncio.Task[None]] = set()
        # Labelled by outcome only: /metrics may be open, and endpoint names identify tenants.
        self._counts = Counter("meterway_mirror_requests", "mirrored copies by outcome: completed, failed, "
                               "dropped (the mirror deployment was overloaded)", ["outcome"], registry=registry)

    def generation(self, principal: Principal, placement: Placement, make_plan: Callable[[], Plan],
                   prices: Price) -> None:
        """Mirror a generation request; ``make_plan`` plans it for the mirror deployment (in the copy's task)."""
        self._start(placement, lambda: self._generate(principal, make_plan(), prices))

    def embedding(self, principal: Principal, placement: Placement, make_plan: Callable[[], EmbeddingPlan]) -> None:
        self._start(placement, lambda: self._embed(principal, make_plan()))

    def _start(self, placement: Placement, work: Callable[[], Coroutine[None, None, None]]) -> None:
        key = (placement.endpoint, placement.deployment)
        if self._inflight[key] >= self._max:
            self._counts.labels("dropped").inc()
            return
        self._inflight[key] += 1
        task = asyncio.create_task(self._guarded(work, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Callable[[], Coroutine[None, None, None]], key: tuple[str, str]) -> None:
        outcome = "failed"
        try:
            await work()
            outcome = "completed"
        except Exception as exc:  # a mirror's failure is counted and logged, and stays here
            log.warning("mirror_failed", endpoint=key[0], deployment=key[1], error=str(exc),
                        error_type=type(exc).__name__)
        finally:
            self._inflight[key] -= 1
            self._counts.labels(outcome).inc()

    async def _generate(self, principal: Principal, plan: Plan, prices: Price) -> None:
        run = Run(plan, principal, self._pool, self._meter, _Unthrottled(), prices, self._timeout_s)
        status = "failed"
        try:
            async for _index, _delta in run.events():
                pass
            status = "failed" if run.failed else "completed"
        finally:
            await run.finish(status)
        if status == "failed":
            raise RuntimeError(run.failed.error if run.failed else "the mirrored generation failed")

    async def _embed(self, principal: Principal, plan: EmbeddingPlan) -> None:
        started = datetime.now(UTC)
        result = await self._pool.embed(plan.job)
        await self._meter.record(usage_event(plan.request_id, principal, plan.model, "embeddings",
                                             result.prompt_tokens, 0, started, placement=plan.placement))

    async def drain(self) -> None:
        """Wait for the copies under way (app shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

