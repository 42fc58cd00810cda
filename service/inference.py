"""The request path behind every generation: admit, run on the pool, meter, settle.

A ``Run`` owns one admitted request from the pool's first token to its ledger event. However the request
ends — completed, failed in the worker, timed out, or abandoned by the client mid-stream — ``finish`` runs
exactly once: it bills what the engine really generated (nothing if it produced nothing) and returns the
unused part of the reservation to the throttle.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from billing.events import UsageEvent
from meterway.failures import tolerated
from models.runtime.api import TokenDelta, TokenLogprob

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from decimal import Decimal

    from billing.money import Price
    from models.catalog import ModelSpec
    from models.pool.api import DeltaStream, ModelPool
    from service.auth import Principal
    from service.jobs import Plan

log = structlog.get_logger("meterway.inference")
FINAL_WAIT_S = 10.0


@dataclass(frozen=True)
class Placement:
    """What a request is metered under: the endpoint and deployment that served it, and whether the customer
    pays (a mirrored copy does not). ``/v1`` is the built-in serverless endpoint's one deployment."""

    endpoint: str = "serverless"
    deployment: str = "default"
    billable: bool = True
    batch: str | None = None  # the batch job whose line it answers


SERVERLESS = Placement()


def usage_event(request_id: str, principal: Principal, model: ModelSpec, endpoint: str, prompt_tokens: int,
                completion_tokens: int, started_at: datetime, status: str = "completed",
                user: str | None = None, placement: Placement = SERVERLESS) -> UsageEvent:
    """The one place a served request becomes its usage event (finished now)."""
    return UsageEvent(request_id=request_id, tenant=principal.billing_tenant, key_id=principal.billing_key,
                      model=model.id, endpoint=endpoint, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, started_at=started_at, finished_at=datetime.now(UTC),
                      status=status, base_model=model.base, user=user, billable=placement.billable,
                      endpoint_name=placement.endpoint, deployment=placement.deployment,
                      batch_id=placement.batch, subject=principal.subject)


class UsageRecorder(Protocol):
    """Where usage events go (``billing``): durable before ``record`` returns."""

    async def record(self, event: UsageEvent) -> None: ...


class Admission(Protocol):
    """An admitted request's reservation in the throttle."""

    @property
    def headers(self) -> dict[str, str]: ...

    async def settle(self, tokens_used: int, cost_used: Decimal) -> None: ...

    async def release(self) -> None: ...


@dataclass
class Choice:
    """One generated sequence's accumulated state."""

    index: int
    text: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the engine took from its prefix cache
    finish_reason: str | None = None
    error: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)  # when the request asked for them


class Run:
    """One admitted generation request streaming from the pool."""

    def __init__(self, plan: Plan, principal: Principal, pool: ModelPool, meter: UsageRecorder, admission: Admission,
                 prices: Price, timeout_s: float) -> None:
        self.plan = plan
        self.principal = principal
        self.choices = [Choice(i) for i in range(len(plan.jobs))]
        self.started_at = datetime.now(UTC)
        self._pool = pool
        self._meter = meter
        self._admission = admission
        self._prices = prices
        self._deadline = time.monotonic() + timeout_s
        self._streams: list[DeltaStream] = []
        self._finished = asyncio.Event()
        self._finishing = False

    @property
    def headers(self) -> dict[str, str]:
        return self._admission.headers

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    @property
    def prompt_tokens(self) -> int:
        return self.plan.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens every choice took from the prefix cache (usage detail only: billing counts all)."""
        return min(c.cached_tokens for c in self.choices)

    @property
    def failed(self) -> TokenDelta | None:
        """The first choice that ended in an error, as its delta."""
        for choice in self.choices:
            if choice.finish_reason == "error":
                return TokenDelta("", "", self.prompt_tokens, choice.completion_tokens, "error", choice.error)
        return None

    async def events(self) -> AsyncGenerator[tuple[int, TokenDelta]]:
        """Deltas of every choice, as they come; each choice's last delta has its finish reason."""
        self._streams = [self._pool.generate(job) for job in self.plan.jobs]
        merged = self._single() if len(self._streams) == 1 else self._merged()
        async for index, delta in merged:
            choice = self.choices[index]
            choice.completion_tokens = max(choice.completion_tokens, delta.completion_tokens)
            choice.cached_tokens = max(choice.cached_tokens, delta.cached_tokens)
            if delta.text:
                choice.text.append(delta.text)
            if delta.logprobs:
                choice.logprobs.extend(delta.logprobs)
            if delta.finish_reason:
                choice.finish_reason, choice.error = delta.finish_reason, delta.error
            yield index, delta

    async def _single(self) -> AsyncIterator[tuple[int, TokenDelta]]:
        async with asyncio.timeout_at(self._loop_deadline()):
            async for delta in self._streams[0]:
                yield 0, delta

    async def _merged(self) -> AsyncIterator[tuple[int, TokenDelta]]:
        queue: asyncio.Queue[tuple[int, TokenDelta] | None] = asyncio.Queue()

        async def pump(index: int, stream: AsyncIterator[TokenDelta]) -> None:
            try:
                async for delta in stream:
                    await queue.put((index, delta))
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(self._streams)]
        try:
            async with asyncio.timeout_at(self._loop_deadline()):
                open_streams = len(tasks)
                while open_streams:
                    item = await queue.get()
                    if item is None:
                        open_streams -= 1
                    else:
                        yield item
        finally:
            for task in tasks:
                task.cancel()

    def _loop_deadline(self) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, self._deadline - time.monotonic())

    async def finish(self, status: str, *, delivered: bool = True) -> None:
        """Bill what was generated and settle the reservation; runs once, whatever the caller does.

        ``delivered`` is False when the caller received nothing (a non-streamed request that failed): then
        nothing is billed, however many tokens the engine made before failing.
        """
        if self._finishing:
            await self._finished.wait()
            return
        self._finishing = True
        try:
            await self._collect_final_counts()
            await self._bill(status, delivered)
        finally:
            self._finished.set()

    async def _collect_final_counts(self) -> None:
        # A stream closed early (client gone, timeout) still reports what the engine generated before the
        # cancel reached it: the pool resolves ``final`` with the sequence's last delta.
        for choice, stream in zip(self.choices, self._streams, strict=False):
            if choice.finish_reason is None:
                with tolerated("inference.close_stream"):
                    await stream.aclose()
                # Without the engine's final count, the tokens delivered are billed (counted as they went out).
                with tolerated("inference.final_count"):
                    last = await asyncio.wait_for(asyncio.shield(stream.final), FINAL_WAIT_S)
                    choice.completion_tokens = max(choice.completion_tokens, last.completion_tokens)

    async def _bill(self, status: str, delivered: bool) -> None:
        completion = self.completion_tokens
        produced = delivered and (completion > 0 or status == "completed")
        if not produced:
            await self._admission.release()
            return
        event = usage_event(self.plan.request_id, self.principal, self.plan.model, self.plan.endpoint,
                            self.prompt_tokens, completion, self.started_at, status, self.plan.user,
                            self.plan.placement)
        settle = self._admission.settle(self.prompt_tokens + completion,
                                        self._prices.cost(self.prompt_tokens, completion))
        # Independent: the event's durability and the throttle's refund need not wait for each other.
        recorded, _settled = await asyncio.gather(self._meter.record(event), settle, return_exceptions=True)
        if isinstance(recorded, BaseException):
            raise recorded
        log.info("usage", completion_id=event.request_id, tenant=event.tenant, model=event.model,
                 prompt_tokens=event.prompt_tokens, completion_tokens=completion, status=status)

