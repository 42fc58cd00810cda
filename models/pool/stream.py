"""The async iterator ``ModelPool.generate`` returns: deltas in order, plus the final delta as a future.

Deltas are pushed by a model host (from a worker's pipe reader or the in-process echo model) whether or not
anyone is reading, so the final delta — and with it the completion token count that billing needs — is
known even when the consumer stops early. Closing early asks the host to cancel and waits, bounded, for
its ``cancelled`` delta.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from models.runtime.api import TokenDelta

if TYPE_CHECKING:
    from types import TracebackType

    from models.pool.api import GenerationJob

# Admission: waits for the model, submits the job with ``push`` as its sink, returns how to cancel it.
Opener = Callable[["GenerationStream"], Awaitable[Callable[[], None]]]


class GenerationStream:
    """One job's stream; implements ``models.pool.api.DeltaStream``.

    ``final`` resolves with the job's last delta (``finish_reason`` set) in every outcome: finished,
    cancelled, worker crash (``error``, with the tokens delivered so far), or refused before it ran
    (``error`` with zero tokens; the refusal itself is raised to the consumer).
    """

    def __init__(self, job: GenerationJob, opener: Opener, *, cancel_wait_s: float = 5.0) -> None:
        self.job = job
        self.final: asyncio.Future[TokenDelta] = asyncio.get_running_loop().create_future()
        self._opener = opener
        self._cancel_wait_s = cancel_wait_s
        self._queue: asyncio.Queue[TokenDelta] = asyncio.Queue()
        self._cancel: Callable[[], None] | None = None
        self._opened = False
        self._exhausted = False
        self._last = TokenDelta(job.request_id, "", 0, 0)
        self._on_final: list[Callable[[TokenDelta], None]] = []

    async def start(self) -> None:
        """Admit and submit the job (idempotent); ``ModelLoading``/``ModelOverloaded`` surface here."""
        if self._opened:
            return
        self._opened = True
        try:
            self._cancel = await self._opener(self)
        except BaseException as exc:
            self._resolve(TokenDelta(self.job.request_id, "", 0, 0, "error", str(exc) or type(exc).__name__))
            self._exhausted = True
            raise

    def push(self, delta: TokenDelta) -> None:
        """Called by the host for every delta, in order; the one with ``finish_reason`` is the last."""
        self._last = delta
        self._queue.put_nowait(delta)
        if delta.finish_reason is not None:
            self._resolve(delta)

    def when_final(self, callback: Callable[[TokenDelta], None]) -> None:
        """Run ``callback`` with the final delta as soon as it is known (synchronously, unlike a future's
        done callbacks, so that a slot is free again before the consumer even sees the last delta)."""
        if self.final.done():
            callback(self.final.result())
        else:
            self._on_final.append(callback)

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> TokenDelta:
        if not self._opened:
            await self.start()
        if self._exhausted:
            raise StopAsyncIteration
        try:
            delta = await self._queue.get()
        except asyncio.CancelledError:
            self._request_cancel()  # the consumer's task was cancelled: stop generating for it
            raise
        if delta.finish_reason is not None:
            self._exhausted = True
        return delta

    async def aclose(self) -> None:
        """Stop early: cancel the job if still running and wait (bounded) for its final delta."""
        self._exhausted = True
        if not self._opened:
            self._opened = True
            self._resolve(TokenDelta(self.job.request_id, "", 0, 0, "cancelled"))
            return
        if self.final.done():
            return
        self._request_cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.final), self._cancel_wait_s)
        # The host never answered: bill what was delivered.
        last = self._last
        self._resolve(TokenDelta(last.request_id, "", last.prompt_tokens, last.completion_tokens,
                                 "cancelled", cached_tokens=last.cached_tokens))

    async def __aenter__(self) -> GenerationStream:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def _request_cancel(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None and not self.final.done():
            cancel()

    def _resolve(self, delta: TokenDelta) -> None:
        if self.final.done():
            return
        self.final.set_result(delta)
        callbacks, self._on_final = self._on_final, []
        for callback in callbacks:
            callback(delta)
