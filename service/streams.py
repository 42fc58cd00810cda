"""Turning a started run into an HTTP body: SSE chunks, or a collected answer, billed exactly once.

Whatever ends a stream — the last token, a worker error (sent as an SSE error event), or the client going
away — ``StreamWriter`` makes sure the run's ``finish`` runs once, in a task of its own so that the
cancellation of the response task cannot cut the billing short.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from meterway.errors import GenerationTimeout, MeterwayError, WorkerCrashed
from models.runtime.api import TokenDelta
from service.protocol import (
    SSE_DONE,
    ChatCompletionChunk,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    PromptTokensDetails,
    Usage,
    sse,
)

if TYPE_CHECKING:
    from service.serving import Started

ChunkMaker = Callable[[int, TokenDelta], Any]


class StreamWriter:
    """Owns the finishing tasks of streams, so that shutdown can wait for their ledger events."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    def finish_later(self, started: Started, status: str, *, delivered: bool = True) -> None:
        task = asyncio.create_task(started.run.finish(status, delivered=delivered))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for every pending finish (app shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def write(self, started: Started, chunks: tuple[Any, ChunkMaker, Callable[[Usage], Any]]
                    ) -> AsyncIterator[bytes]:
        """SSE body: role chunk, content chunks, finish chunks, optional usage chunk, ``[DONE]``."""
        opening, make_chunk, make_usage = chunks
        run, status = started.run, "abandoned"
        try:
            if opening is not None:
                yield sse(opening)
            try:
                async for index, delta in _events(started):
                    if delta.finish_reason == "error":
                        status = "failed"
                        yield sse(_stream_error(delta).body())
                        return
                    if delta.text or delta.finish_reason:
                        yield sse(make_chunk(index, delta))
            except TimeoutError:
                status = "failed"
                yield sse(_timeout(run.plan.request_id).body())
                return
            status = "completed"
            if run.plan.include_usage:
                yield sse(make_usage(usage_of(started)))
            yield SSE_DONE
        finally:
            self.finish_later(started, status)


async def collect(started: Started, writer: StreamWriter) -> None:
    """Run a non-streamed request to its end; a failure delivered nothing, so nothing is billed."""
    try:
        async for _index, delta in _events(started):
            if delta.finish_reason == "error":
                await started.run.finish("failed", delivered=False)
                raise _stream_error(delta)
    except TimeoutError as exc:
        writer.finish_later(started, "failed", delivered=False)
        raise _timeout(started.run.plan.request_id) from exc
    except BaseException:
        writer.finish_later(started, "failed", delivered=False)
        raise
    await started.run.finish("completed")


async def _events(started: Started) -> AsyncIterator[tuple[int, TokenDelta]]:
    yield started.first
    async for item in started.rest:
        yield item


def _stream_error(delta: TokenDelta) -> MeterwayError:
    return WorkerCrashed(f"The model failed while generating: {delta.error or 'unknown error'}. "
                         "Tokens delivered before the failure are billed; retry the request.")


def _timeout(request_id: str) -> MeterwayError:
    return GenerationTimeout(f"Request {request_id} ran past the server's generation time limit "
                             "(METERWAY_REQUEST_TIMEOUT_S); lower max_tokens or stream the response.")


def usage_of(started: Started) -> Usage:
    """The run's usage as the engine counted it."""
    run = started.run
    return Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
                 total_tokens=run.prompt_tokens + run.completion_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=run.cached_tokens))


def chat_chunks(started: Started, model: str, created: int) -> tuple[Any, ChunkMaker, Callable[[Usage], Any]]:
    """Chunk makers for ``chat.completion.chunk`` events."""
    request_id = started.run.plan.request_id
    choices = len(started.run.choices)

    def chunk(choices_list: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=request_id, choices=choices_list, created=created, model=model, usage=usage)

    opening = chunk([ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content="")) for i in range(choices)])

    def make(index: int, delta: TokenDelta) -> ChatCompletionChunk:
        piece = ChunkDelta(content=delta.text) if delta.text else ChunkDelta()
        return chunk([ChunkChoice(index=index, delta=piece, finish_reason=delta.finish_reason)])

    def usage(value: Usage) -> ChatCompletionChunk:
        return chunk([], value)

    return opening, make, usage


def completion_chunks(started: Started, model: str, created: int
                      ) -> tuple[Any, ChunkMaker, Callable[[Usage], Any]]:
    """Chunk makers for streamed legacy completions."""
    request_id = started.run.plan.request_id

    def make(index: int, delta: TokenDelta) -> Completion:
        choice = CompletionChoice(text=delta.text, index=index, finish_reason=delta.finish_reason)
        return Completion(id=request_id, choices=[choice], created=created, model=model)

    def usage(value: Usage) -> Completion:
        return Completion(id=request_id, choices=[], created=created, model=model, usage=value)

    return None, make, usage
