"""The seam between admission logic and where counters live: a small Protocol and a registry of stores.

A store knows three kinds of counters and nothing about keys, tenants or HTTP:

- ``window``: a sliding-window counter, two keys (current fixed window, previous one);
- ``lease``: concurrency slots, a set of lease ids each with an expiry (a crashed gateway's slots lapse);
- ``budget``: money reserved or spent in a period, in integer nano-units.

``reserve`` checks every given counter and, only if all fit, reserves all of them: atomically, in one step
(one Redis round trip). ``adjust`` returns the unused part of a reservation and frees its lease (in Redis,
with the tenant's next admission or a few milliseconds later).
Stores are picked by the URL scheme of ``METERWAY_REDIS_URL`` (empty = ``memory://``) from ``STORES``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

CheckKind = Literal["window", "lease", "budget"]


class Check(NamedTuple):
    """One counter to check and reserve. ``weight`` is the previous window's share (windows only).

    Tuples: a few are made for every admission, and a tuple is made several times faster than a frozen
    dataclass.
    """

    kind: CheckKind
    keys: tuple[str, ...]
    limit: int
    amount: int
    weight: float = 0.0
    ttl_s: int = 0


class Outcome(NamedTuple):
    """Whether everything was reserved, and each counter as found before reserving.

    ``counts[i]`` is ``(current, previous)`` for a window, ``(slots held, 0)`` for a lease and
    ``(units spent or reserved, 0)`` for a budget.
    """

    admitted: bool
    counts: tuple[tuple[int, int], ...]


class Adjustment(NamedTuple):
    """Add ``delta`` (negative: give back) to a counter, if it still exists."""

    key: str
    delta: int


def fits(check: Check, count: tuple[int, int]) -> bool:
    """Whether ``check`` fits the counter ``count``: the rule of every store (and ``lua/admit.lua``)."""
    first, second = count
    if check.kind == "window":
        return second * check.weight + first + check.amount <= check.limit
    if check.kind == "lease":
        return first + 1 <= check.limit
    return first < check.limit and first + check.amount <= check.limit


class ReservationStore(Protocol):
    """Where counters live: in this process, or in Redis shared by every gateway process."""

    async def reserve(self, checks: Sequence[Check], lease_id: str, now: float) -> Outcome:
        """Check all ``checks``; reserve all of them (``lease_id`` for leases) only if every one fits."""
        ...

    async def adjust(self, adjustments: Sequence[Adjustment], lease_keys: Sequence[str],
                     lease_id: str) -> None:
        """Apply ``adjustments`` and drop ``lease_id`` from ``lease_keys``, now or queued for shortly.

        Must not wait on I/O: it runs on every request's way out, cancelled requests included.
        """
        ...

    @property
    def round_trips(self) -> int:
        """Requests this store has sent to its server (0 for in-process stores)."""
        ...

    async def start(self) -> None:
        """Prepare (e.g. load scripts) so that every admission is one round trip; optional."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...
