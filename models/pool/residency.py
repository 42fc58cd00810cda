"""What the pool knows about each hostable model, and the memory policy: who must go to make room.

Pure bookkeeping with no I/O, so that the policy reads in one place: a model's footprint counts against the
budget while it is loading or loaded, and an instance of a dedicated deployment (``pinned``) counts for as long
as the deployment holds it, loaded or not; only a loaded, unpinned model with nothing running or waiting may
be unloaded; the least recently used of those go first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meterway.errors import ModelOverloaded, Unavailable
from models.pool.adapters import AdapterSlots
from models.pool.api import ModelState
from models.pool.metrics import model_label

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

    from models.catalog import ModelSpec
    from models.pool.hosts import ModelHost


@dataclass(eq=False)
class Resident:
    """One hostable model's place in the pool (a LoRA fine-tune shares its base's)."""

    spec: ModelSpec
    footprint: int
    adapters: AdapterSlots = field(default_factory=AdapterSlots)
    state: ModelState = ModelState.COLD
    host: ModelHost | None = None
    loading: asyncio.Task[None] | None = None
    admitted: int = 0  # requests running or waiting for the load
    background: int = 0  # of which batch lines: queue_limit bounds the others
    last_used: float = 0.0
    last_load_s: float = 2.0  # the Retry-After hint while loading; updated by every load
    pinned: bool = False  # an instance of a dedicated deployment: never evicted, never unloaded when idle
    error: str | None = None  # why its last load failed (cleared by a load that succeeds)
    log: Callable[[str], None] | None = None  # where a dedicated instance's worker logs go (its deployment's)

    @property
    def label(self) -> str:
        """The model as metrics name it (``models.pool.metrics.model_label``)."""
        return model_label(self.spec.id)

    @property
    def idle(self) -> bool:
        """Loaded, unpinned, with nothing running or waiting: the only state that may be unloaded."""
        return self.state is ModelState.READY and self.admitted == 0 and not self.pinned


def reserved_bytes(residents: Iterable[Resident]) -> int:
    """Memory counted against the budget: every model loading or loaded, and every dedicated instance."""
    return sum(r.footprint for r in residents if r.pinned or r.state is not ModelState.COLD)


def choose_victims(newcomer: Resident, residents: Iterable[Resident], budget_bytes: int) -> list[Resident]:
    """The idle models to unload, least recently used first, so that ``newcomer`` fits the budget.

    Raises ``Unavailable`` when it could never fit, ``ModelOverloaded`` (429) when the memory is held by
    models with requests in flight.
    """
    if newcomer.footprint > budget_bytes:  # it can never fit: no point in asking the caller to retry
        raise Unavailable(f"{newcomer.spec.id} needs about {newcomer.footprint >> 20} MB, more than the "
                          f"pool's memory budget of {budget_bytes >> 20} MB", code="model_too_large")
    residents = [r for r in residents if r is not newcomer]
    free = budget_bytes - reserved_bytes(residents)
    idle = sorted((r for r in residents if r.idle), key=lambda r: r.last_used)
    victims: list[Resident] = []
    while free < newcomer.footprint and idle:
        victim = idle.pop(0)
        victims.append(victim)
        free += victim.footprint
    if free < newcomer.footprint:
        pinned = sum(r.footprint for r in residents if r.pinned)
        if budget_bytes - pinned < newcomer.footprint:
            raise ModelOverloaded(f"no memory to load {newcomer.spec.id}: {pinned >> 20} MB of the pool's "
                                  f"{budget_bytes >> 20} MB is held by dedicated deployments", retry_after=30.0)
        raise ModelOverloaded(f"no memory to load {newcomer.spec.id}: the loaded models are all busy",
                              retry_after=5.0)
    return victims
