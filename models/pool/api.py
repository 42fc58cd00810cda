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
    group: str | None = None  # the dedicated deployment whose instances run it (None: the shared pool)
    background: bool = False  # a batch line: the engine admits online sequences ahead of it


@dataclass(frozen=True)
class EmbeddingJob:
    """A validated embedding request: token ids per input."""

    request_id: str
    model: ModelSpec
    inputs: tuple[tuple[int, ...], ...]
    group: str | None = None  # as ``GenerationJob.group``
    background: bool = False  # a batch line (``GenerationJob.background``)


@dataclass(frozen=True)
class InstanceView:
    """One instance as operators and billing see it; times are unix seconds."""

    id: str  # "<group>#<n>", unique within the group's life in this pool
    uid: str  # unique across pools and restarts: what an instance's billing is keyed by
    state: str  # waiting (for memory) / loading / ready / failed / stopping / stopped
    in_flight: int
    pid: int | None
    started_at: float  # since when it holds its memory: what instance-minutes are billed from
    ended_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class GroupView:
    """A dedicated deployment's instances: the live ones, and those that stopped lately (for billing)."""

    model: str
    instances: tuple[InstanceView, ...]
    stopped: tuple[InstanceView, ...]

    @property
    def in_flight(self) -> int:
        return sum(instance.in_flight for instance in self.instances)


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

    @property
    def instance_types(self) -> tuple[str, ...]:
        """The instance types dedicated deployments may ask for here ("cpu", "gpu")."""

    def provision(self, group: str, spec: ModelSpec, instances: int) -> None:
        """Hold ``instances`` dedicated workers of ``spec`` for ``group`` (a deployment; 0 releases them).
        Raises ``InsufficientCapacity`` when they could never fit; jobs naming ``group`` run on them."""

    def instances(self, group: str) -> GroupView | None:
        """A dedicated group's instances now, and those that stopped lately."""

    def instance_logs(self, group: str) -> list[str]:
        """The recent log lines of a dedicated group's workers and the pool's events about them."""
