"""The shared model pool: worker processes that load models on demand, batch, evict and scale to zero.

Public API (the gateway's only entry points; nothing here imports torch)::

    build_pool(settings: Settings, store_dir: Path, catalog: list[ModelSpec], *,
               registry: CollectorRegistry | None = None) -> ModelPool
    pool.start() / pool.close()                      # async; background supervision, stop every worker
    pool.generate(job: GenerationJob) -> DeltaStream # see models.pool.api.DeltaStream (final, start, aclose)
    pool.embed(job: EmbeddingJob) -> EmbeddingResult # async
    pool.state(model_id) -> ModelState               # cold / loading / ready
    pool.metrics_text() -> str                       # Prometheus exposition
    pool.provision(group, spec, instances)           # a dedicated deployment's own instances (0: release)
    pool.instances(group) -> GroupView | None        # its instances now, and those that stopped lately
    pool.instance_logs(group) -> list[str]           # its workers' recent log lines and the pool's events

``POOL_BACKENDS`` maps ``settings.pool.backend`` to a constructor; a cluster backend is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from meterway.settings import Settings
    from models.catalog import ModelSpec
    from models.pool.api import ModelPool

PoolFactory = Callable[..., "ModelPool"]


def _local(settings: Settings, store_dir: Path, catalog: list[ModelSpec], **options: Any) -> ModelPool:
    from models.pool.local import LocalPool

    return LocalPool(settings.pool, store_dir, catalog, **options)


POOL_BACKENDS: MappingProxyType[str, PoolFactory] = MappingProxyType({"local": _local})


def build_pool(settings: Settings, store_dir: Path, catalog: list[ModelSpec], **options: Any) -> ModelPool:
    """The pool named by ``settings.pool.backend`` (``options``: e.g. ``registry=`` for its metrics)."""
    backend = settings.pool.backend
    if backend not in POOL_BACKENDS:
        raise ValueError(f"METERWAY_POOL_BACKEND={backend!r} is not one of {sorted(POOL_BACKENDS)}")
    return POOL_BACKENDS[backend](settings, store_dir, catalog, **options)
