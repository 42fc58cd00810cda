"""The in-process store of the embedded default: one gateway process, counters in its memory.

Counters live in the ``limits`` library's async ``MemoryStorage`` (which also expires stale window and period
keys); leases live beside it. One ``asyncio.Lock`` spans a whole reservation, so checking and reserving every
counter is atomic against other requests of this process. Nothing survives a restart: use Redis for that.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from limits.aio.storage import MemoryStorage

from service.throttle.store import Adjustment, Check, Outcome, fits

if TYPE_CHECKING:
    from collections.abc import Sequence


class MemoryStore:
    """``ReservationStore`` in this process's memory."""

    def __init__(self) -> None:
        self._counters = MemoryStorage()
        self._leases: dict[str, dict[str, float]] = {}
        self._lock = asyncio.Lock()

    @property
    def round_trips(self) -> int:
        return 0

    async def reserve(self, checks: Sequence[Check], lease_id: str, now: float) -> Outcome:
        async with self._lock:
            counts = [await self._count(check, now) for check in checks]
            admitted = all(fits(check, count) for check, count in zip(checks, counts, strict=True))
            if admitted:
                for check in checks:
                    await self._take(check, lease_id, now)
            return Outcome(admitted, tuple(counts))

    async def adjust(self, adjustments: Sequence[Adjustment], lease_keys: Sequence[str],
                     lease_id: str) -> None:
        async with self._lock:
            for key in lease_keys:
                self._leases.get(key, {}).pop(lease_id, None)
            for change in adjustments:
                current = await self._counters.get(change.key)
                if current <= 0 or change.delta == 0:
                    continue  # the window or period is gone: nothing to give back
                if change.delta < 0:
                    await self._counters.decr(change.key, -change.delta)
                else:
                    await self._counters.incr(change.key, 0, change.delta)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._counters.reset()

    async def _count(self, check: Check, now: float) -> tuple[int, int]:
        if check.kind == "lease":
            leases = self._leases.setdefault(check.keys[0], {})
            for lease, expiry in list(leases.items()):
                if expiry <= now:
                    del leases[lease]  # a holder that never released: its lease lapsed
            return len(leases), 0
        if check.kind == "window":
            return await self._counters.get(check.keys[0]), await self._counters.get(check.keys[1])
        return await self._counters.get(check.keys[0]), 0

    async def _take(self, check: Check, lease_id: str, now: float) -> None:
        if check.kind == "lease":
            self._leases[check.keys[0]][lease_id] = now + check.ttl_s
        elif check.amount:
            await self._counters.incr(check.keys[0], check.ttl_s, check.amount)

