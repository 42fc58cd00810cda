"""Which LoRA adapters a base model's worker holds, mirrored on the gateway side.

The engine keeps at most ``max_adapters`` adapters. The pool never lets it evict one on its own — it would
not know which went — so when a new adapter needs a slot, the pool detaches its least recently used adapter
with no request in flight first. Attaching is single-flight: concurrent first requests share one attach.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterway.errors import ModelOverloaded

if TYPE_CHECKING:
    from models.pool.hosts import ModelHost

DEFAULT_MAX_ADAPTERS = 8  # the engine's default (LoadSpec.extra["max_adapters"])


@dataclass(frozen=True)
class AdapterUse:
    """The outcome of ``AdapterSlots.use``: whether it was already attached, and what attaching took."""

    hit: bool
    seconds: float


class AdapterSlots:
    """The adapters attached to one worker, least recently used first, with their in-flight counts."""

    def __init__(self, capacity: int = DEFAULT_MAX_ADAPTERS) -> None:
        self._capacity = max(1, capacity)
        self._attached: OrderedDict[str, asyncio.Task[float]] = OrderedDict()
        self._in_use: dict[str, int] = {}

    async def use(self, host: ModelHost, name: str, path: str) -> AdapterUse:
        """Make sure ``name`` is attached and count one request using it; the caller calls ``release``."""
        self._in_use[name] = self._in_use.get(name, 0) + 1
        task = self._attached.get(name)
        hit = task is not None
        try:
            if task is None:
                task = asyncio.create_task(self._attach(host, name, path, self._make_room()),
                                           name=f"attach-{name}")
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                self._attached[name] = task
            else:
                self._attached.move_to_end(name)
            seconds = await asyncio.shield(task)
        except BaseException:
            self.release(name)
            if task is not None and task.done() and self._attached.get(name) is task:
                del self._attached[name]  # a failed attach: the next request tries again
            raise
        return AdapterUse(hit, 0.0 if hit else seconds)

    def release(self, name: str) -> None:
        """One request using ``name`` ended."""
        left = self._in_use.get(name, 0) - 1
        if left > 0:
            self._in_use[name] = left
        else:
            self._in_use.pop(name, None)

    def clear(self) -> None:
        """The worker is gone, and its adapters with it."""
        self._attached.clear()

    def _make_room(self) -> list[str]:
        """Adapters to detach before attaching one more (least recently used, idle); reserved at once."""
        victims: list[str] = []
        idle = [name for name in self._attached if name not in self._in_use]
        while len(self._attached) - len(victims) >= self._capacity:
            if not idle:
                raise ModelOverloaded(f"all {self._capacity} adapter slots of this base model are serving "
                                      "requests; retry shortly", retry_after=1.0)
            victims.append(idle.pop(0))
        for name in victims:
            del self._attached[name]
        return victims

    @staticmethod
    async def _attach(host: ModelHost, name: str, path: str, victims: list[str]) -> float:
        for victim in victims:
            await host.detach_adapter(victim)
        return await host.attach_adapter(name, path)
