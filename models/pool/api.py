"""The pool's contract with the gateway: one small interface that a cluster backend can also implement.

The HTTP process holds a ``ModelPool``; it never imports torch. Jobs arrive already validated and tokenized
(``service`` builds them); the pool reports what the engine really did, token by token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator

    from models.catalog import ModelSpec
    from models.runtime.api import EmbeddingResult, SamplingParams, TokenDelta


class ModelState(enum.StrEnum):
    """A model's place in the pool, shown in ``/v1/models`` and the ``x-meterway-model-state`` header."""

    COLD = "cold"
    LOADING = "loading"
    READY = "ready"


@dataclass(frozen=True)
class GenerationJob:
    """A validated generation: the only input the pool accepts for text."""

    request_id: str
    model: ModelSpec
    prompt_ids: tuple[int, ...]
    params: SamplingParams


@dataclass(frozen=True)
class EmbeddingJob:
    """A validated embedding request: token ids per input."""

    request_id: str
    model: ModelSpec
    inputs: tuple[tuple[int, ...], ...]


class DeltaStream(Protocol):
    """What ``ModelPool.generate`` returns: the job's deltas, and its final delta even if nobody reads them.

    - ``await stream.start()`` admits and submits the job (idempotent); ``ModelLoading`` (503),
      ``ModelOverloaded`` (429) and friends are raised here, before any delta. Iterating starts it too.
    - ``final`` resolves with the job's last delta (``finish_reason`` set) in every outcome: finished,
      cancelled, crashed (``error``, carrying the completion tokens delivered so far) or refused before it
      ran (``error``, zero tokens). It is what billing reads.
    - ``await stream.aclose()`` (also ``async with stream:``) stops early: it cancels the job in the engine
      and waits, bounded, for its ``cancelled`` delta, so that ``final`` then holds the tokens generated.
      Cancelling the consumer's task while it awaits a delta also cancels the job in the engine.
    """

    final: asyncio.Future[TokenDelta]

    def __aiter__(self) -> AsyncIterator[TokenDelta]: ...

    async def __anext__(self) -> TokenDelta: ...

    async def start(self) -> None:
        """Admit and submit the job; raises the pool's refusals before any delta."""

    async def aclose(self) -> None:
        """Cancel the job if still running and wait (bounded) until ``final`` is resolved."""


class ModelPool(Protocol):
    """Where models run. Raises ``ModelLoading`` (503), ``ModelOverloaded`` (429), ``WorkerCrashed``."""

    async def start(self) -> None:
        """Start background duties (idle unload, worker supervision)."""

    async def close(self) -> None:
        """Stop every worker."""

    def generate(self, job: GenerationJob) -> DeltaStream:
        """Stream the job's deltas; the last one has ``finish_reason``. Closing the iterator cancels it."""

    async def embed(self, job: EmbeddingJob) -> EmbeddingResult:
        """Embed the job's inputs."""

    def state(self, model_id: str) -> ModelState:
        """The model's current state."""

    def metrics_text(self) -> str:
        """Prometheus exposition of the pool's metrics."""
