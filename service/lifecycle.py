"""One generation's life after admission: its first delta, its body, and its one finish.

The request path is plan (``service.jobs``) → run (``service.inference.Run``, on the pool) → encode. A
``Generation`` is what the serving service hands a route: the route asks it for an SSE body (``stream``) or a
collected ``Outcome`` (``collect``) and encodes the protocol objects; the generation alone decides how the run
ended and calls ``Run.finish`` — exactly once, whatever ends it: the last token, a worker error, the time
limit, or the client going away. A stream's finish runs in a task of its own (``Finishes``), so that the
cancellation of the response task cannot cut the billing short, and shutdown waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from meterway.errors import GenerationTimeout, MeterwayError, WorkerCrashed
from meterway.failures import tolerated
from service.protocol import SSE_DONE, PromptTokensDetails, Usage, sse

if TYPE_CHECKING:
    from models.runtime.api import TokenDelta
    from service.inference import Choice, Run
    from service.jobs import Plan

log = structlog.get_logger("meterway.serving")

ChunkMaker = Callable[[int, "TokenDelta"], Any]


@dataclass(frozen=True)
class StreamEncoding:
    """How a protocol writes a stream: an optional opening chunk, one chunk per delta, the usage chunk."""

    opening: Any
    chunk: ChunkMaker
    usage: Callable[[Usage], Any]


@dataclass(frozen=True)
class Outcome:
    """A non-streamed generation that completed: every choice and the engine's count of its tokens."""

    choices: list[Choice]
    usage: Usage


class Finishes:
    """The finishing tasks of generations, so that shutdown can wait for their ledger events."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    def later(self, run: Run, status: str, *, delivered: bool = True) -> None:
        task = asyncio.create_task(run.finish(status, delivered=delivered))
        self._pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("generation_finish_failed", error=str(exc), error_type=type(exc).__name__,
                      exc_info=exc)

    async def drain(self) -> None:
        """Wait for every pending finish (app shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class Generation:
    """An admitted generation under way, with its first delta already in hand."""

    def __init__(self, run: Run, first: tuple[int, TokenDelta], rest: AsyncIterator[tuple[int, TokenDelta]],
                 model_state: str, finishes: Finishes) -> None:
        self._run = run
        self._first = first
        self._rest = rest
        self._finishes = finishes
        self.model_state = model_state

    @classmethod
    async def begin(cls, run: Run, model_state: str, finishes: Finishes) -> Generation:
        """Start ``run`` and wait for its first delta; a run that fails before it is finished as failed."""
        events: AsyncGenerator[tuple[int, TokenDelta]] = run.events()
        try:
            first = await anext(events)
        except BaseException:
            with tolerated("serving.close_events"):
                await events.aclose()
            await run.finish("failed")
            raise
        return cls(run, first, events, model_state, finishes)

    @property
    def request_id(self) -> str:
        return self._run.plan.request_id

    @property
    def plan(self) -> Plan:
        return self._run.plan

    @property
    def fingerprint(self) -> str:
        return self._run.plan.model.fingerprint

    @property
    def choice_count(self) -> int:
        return len(self._run.choices)

    @property
    def headers(self) -> dict[str, str]:
        """The throttle's ``x-ratelimit-*`` headers, the model's state when the request arrived and the
        deployment that serves it."""
        return {**self._run.headers, "x-meterway-model-state": self.model_state,
                "x-meterway-deployment": self._run.plan.placement.deployment}

    def usage(self) -> Usage:
        """The run's usage as the engine counted it."""
        run = self._run
        return Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
                     total_tokens=run.prompt_tokens + run.completion_tokens,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=run.cached_tokens))

    async def stream(self, encoding: StreamEncoding) -> AsyncIterator[bytes]:
        """SSE body: opening chunk, content chunks, finish chunks, optional usage chunk, ``[DONE]``.

        A worker error or the time limit is sent as an SSE error event (the tokens before it are billed);
        a client that goes away is billed for what the engine generated until the cancel reached it.
        """
        status = "abandoned"
        try:
            if encoding.opening is not None:
                yield sse(encoding.opening)
            try:
                async for index, delta in self._deltas():
                    if delta.finish_reason == "error":
                        status = "failed"
                        yield sse(_worker_error(delta).body())
                        return
                    if (delta.text or delta.finish_reason or delta.logprobs) and (
                            chunk := encoding.chunk(index, delta)) is not None:
                        yield sse(chunk)
            except TimeoutError:
                status = "failed"
                yield sse(_timeout(self.request_id).body())
                return
            status = "completed"
            if self._run.plan.include_usage:
                yield sse(encoding.usage(self.usage()))
            yield SSE_DONE
        finally:
            self._finishes.later(self._run, status)

    async def collect(self) -> Outcome:
        """Run to the end; a failure delivered nothing, so nothing is billed and the error is raised."""
        try:
            async for _index, delta in self._deltas():
                if delta.finish_reason == "error":
                    await self._run.finish("failed", delivered=False)
                    raise _worker_error(delta)
        except TimeoutError as exc:
            self._finishes.later(self._run, "failed", delivered=False)
            raise _timeout(self.request_id) from exc
        except BaseException:
            self._finishes.later(self._run, "failed", delivered=False)
            raise
        await self._run.finish("completed")
        return Outcome(self._run.choices, self.usage())

    async def _deltas(self) -> AsyncIterator[tuple[int, TokenDelta]]:
        yield self._first
        async for item in self._rest:
            yield item


def _worker_error(delta: TokenDelta) -> MeterwayError:
    return WorkerCrashed(f"The model failed while generating: {delta.error or 'unknown error'}. "
                         "Tokens delivered before the failure are billed; retry the request.")


def _timeout(request_id: str) -> MeterwayError:
    return GenerationTimeout(f"Request {request_id} ran past the server's generation time limit "
                             "(METERWAY_REQUEST_TIMEOUT_S); lower max_tokens or stream the response.")
