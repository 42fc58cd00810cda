"""Model hosts: what the pool holds for each loaded model, and the registry that picks one by source kind.

A host is either a worker process (every model with weights) or an in-process built-in (the torch-free
``meterway-echo`` test model). ``HOST_KINDS`` maps a ``ModelSpec.source`` kind (the part before ``:``) to
the ``HostKind`` that sizes and creates its hosts; adding a kind is one entry, never an ``elif``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from meterway.errors import InvalidRequest, ModelNotFound
from models.pool.echo import EchoHost
from models.pool.memory import estimate_bytes
from models.pool.worker_host import WorkerHost
from models.runtime.api import LoadSpec
from models.store.layout import model_dir

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from meterway.settings import PoolSettings
    from models.catalog import ModelSpec
    from models.pool import protocol as wire
    from models.runtime.api import EmbeddingResult, EmitDelta, GenerationRequest


class ModelHost(Protocol):
    """One loaded (or loading) model the pool can send work to."""

    @property
    def pid(self) -> int | None:
        """The worker's process id (None for in-process hosts)."""

    async def load(self) -> float:
        """Load the model; returns the seconds the model itself took. Raises on failure."""

    def submit(self, request: GenerationRequest, sink: EmitDelta) -> None:
        """Start a sequence; every delta goes to ``sink``, the last with ``finish_reason`` (always sent)."""

    def cancel(self, request_id: str) -> None:
        """Stop a sequence; its sink then gets a ``cancelled`` delta."""

    async def embed(self, request_id: str, inputs: list[list[int]]) -> EmbeddingResult:
        """Embed token-id inputs."""

    async def attach_adapter(self, name: str, path: str) -> float:
        """Attach a LoRA adapter under ``name``; returns the seconds taken."""

    async def detach_adapter(self, name: str) -> None:
        """Drop an attached adapter, freeing its slot."""

    async def stats(self) -> wire.Stats:
        """The engine's counters and the host's resident memory."""

    def rss_bytes(self) -> int:
        """Resident memory of the host's process now (0 when it is in-process or gone)."""

    async def close(self) -> None:
        """Stop and release the model (a worker process exits)."""


@dataclass(frozen=True)
class HostContext:
    """What a host kind needs from the pool to create a host."""

    store_dir: Path
    settings: PoolSettings
    spawn_worker: Callable[[], Awaitable[asyncio.subprocess.Process]]  # a standby, or a fresh process
    on_exit: Callable[[ModelHost], None]
    on_log: Callable[[str], None] | None = None  # a copy of each worker log line (a dedicated deployment's)


class HostKind(Protocol):
    """Sizes and creates the hosts of one source kind."""

    def footprint_bytes(self, spec: ModelSpec, store_dir: Path) -> int:
        """Memory the model will take once loaded, counted against the pool's budget."""

    def create(self, spec: ModelSpec, context: HostContext) -> ModelHost:
        """A new, not yet loaded host for ``spec``."""


class WorkerKind:
    """Models with weights in the store: one worker process each."""

    def footprint_bytes(self, spec: ModelSpec, store_dir: Path) -> int:
        return estimate_bytes(model_dir(store_dir, spec.store_name), spec.dtype, task=spec.task, extra=spec.extra)

    def create(self, spec: ModelSpec, context: HostContext) -> ModelHost:
        settings = context.settings
        load = LoadSpec(model_id=spec.id, path=str(model_dir(context.store_dir, spec.store_name).resolve()),
                         task=spec.task, dtype=spec.dtype, device=settings.device,
                         max_batch=settings.max_batch, background_batch=settings.background_batch,
                         threads=settings.threads, extra=dict(spec.extra))
        return WorkerHost(load, spawn=context.spawn_worker, on_exit=context.on_exit, on_log=context.on_log,
                          call_timeout_s=settings.call_timeout_s, load_timeout_s=settings.load_timeout_s)


BUILTINS: MappingProxyType[str, Callable[[ModelSpec], ModelHost]] = MappingProxyType({"echo": EchoHost})


class BuiltinKind:
    """Models implemented inside the gateway process (no weights, no torch)."""

    def footprint_bytes(self, spec: ModelSpec, store_dir: Path) -> int:
        return 0

    def create(self, spec: ModelSpec, context: HostContext) -> ModelHost:
        name = spec.source.removeprefix("builtin:")
        if name not in BUILTINS:
            raise ModelNotFound(spec.id)
        return BUILTINS[name](spec)


_WORKER = WorkerKind()
HOST_KINDS: MappingProxyType[str, HostKind] = MappingProxyType({
    "builtin": BuiltinKind(),
    "gguf": _WORKER,
    "dir": _WORKER,
    "alias": _WORKER,
    "store": _WORKER,
})


def host_kind(spec: ModelSpec) -> HostKind:
    """The kind that serves ``spec``, by the prefix of its source."""
    kind = spec.source.partition(":")[0]
    if kind not in HOST_KINDS:
        raise InvalidRequest(f"model {spec.id!r} has an unknown source kind {kind!r}")
    return HOST_KINDS[kind]
