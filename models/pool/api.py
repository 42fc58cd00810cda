"""The pool's contract with the gateway: one small interface that a cluster backend can also implement.

The HTTP process holds a ``ModelPool``; it never imports torch. Jobs arrive already validated and tokenized
(``service`` builds them); the pool reports what the engine really did, token by token.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

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


class ModelPool(Protocol):
    """Where models run. Raises ``ModelLoading`` (503), ``ModelOverloaded`` (429), ``WorkerCrashed``."""

    async def start(self) -> None:
        """Start background duties (idle unload, worker supervision)."""

    async def close(self) -> None:
        """Stop every worker."""

    def generate(self, job: GenerationJob) -> AsyncIterator[TokenDelta]:
        """Stream the job's deltas; the last one has ``finish_reason``. Closing the iterator cancels it."""

    async def embed(self, job: EmbeddingJob) -> EmbeddingResult:
        """Embed the job's inputs."""

    def state(self, model_id: str) -> ModelState:
        """The model's current state."""

    def metrics_text(self) -> str:
        """Prometheus exposition of the pool's metrics."""
