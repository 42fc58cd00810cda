"""The in-process store of the embedded default: one gateway process, counters in its memory.

Admission is on every request's path, so counters are plain dicts read and written in one synchronous
section: asyncio runs no other task until it ends, which makes checking and reserving all counters atomic
without a lock. (The ``limits`` library's async ``MemoryStorage`` was the first choice; at five counters per
request its per-call wrappers cost more than the rest of admission together.) Stale windows, periods and
leases are pruned as time passes. Nothing survives a restart: use Redis for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.throttle.store import Adjustment, Check, Outcome, fits

if TYPE_CHECKING:
    from collections.abc import Sequence

#: How often (seconds of the store's clock) expired counters and leases are dropped.
PRUNE_EVERY_S = 60.0


class MemoryStore:
    """``ReservationStore`` in this process's memory."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._expiry: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._pruned_at = 0.0

    @property
    def round_trips(self) -> int:
        return 0

    async def reserve(self, checks: Sequence[Check], lease_id: str, now: float) -> Outcome:
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._prune(now)
        counts = tuple(self._count(check, now) for check in checks)
        admitted = all(fits(check, count) for check, count in zip(checks, counts, strict=True))
        if admitted:
            for check in checks:
                self._take(check, lease_id, now)
        return Outcome(admitted, counts)

    async def adjust(self, adjustments: Sequence[Adjustment], lease_keys: Sequence[str],
                     lease_id: str) -> None:
        for key in lease_keys:
            self._leases.get(key, {}).pop(lease_id, None)
        for change in adjustments:
            if change.key in self._counters:  # else the window or period is gone: nothing to give back
                self._counters[change.key] = max(0, self._counters[change.key] + change.delta)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()
        self._expiry.clear()
        self._leases.clear()

    def _count(self, check: Check, now: float) -> tuple[int, int]:
        if check.kind == "lease":
            leases = self._leases.get(check.keys[0], {})
            for lease in [lease for lease, expiry in leases.items() if expiry <= now]:
                del leases[lease]  # a holder that never released: its lease lapsed
            return len(leases), 0
        first = self._live(check.keys[0], now)
        return first, (self._live(check.keys[1], now) if check.kind == "window" else 0)

    def _live(self, key: str, now: float) -> int:
        if self._expiry.get(key, now) < now:
            self._drop(key)
        return self._counters.get(key, 0)

    def _take(self, check: Check, lease_id: str, now: float) -> None:
        key = check.keys[0]
        if check.kind == "lease":
            self._leases.setdefault(key, {})[lease_id] = now + check.ttl_s
        elif check.amount:
            self._counters[key] = self._counters.get(key, 0) + check.amount
            self._expiry[key] = now + check.ttl_s

    def _drop(self, key: str) -> None:
        self._counters.pop(key, None)
        self._expiry.pop(key, None)

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        for key in [key for key, expiry in self._expiry.items() if expiry < now]:
            self._drop(key)
        for key, leases in list(self._leases.items()):
            for lease in [lease for lease, expiry in leases.items() if expiry <= now]:
                del leases[lease]
            if not leases:
                del self._leases[key]
