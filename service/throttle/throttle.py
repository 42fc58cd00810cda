"""Admission: check and reserve every limit of a key (and its tenant) before the model runs.

``build_throttle(settings)`` picks the store from ``METERWAY_REDIS_URL`` (empty: in memory) and returns a
:class:`Throttle`. The request path calls ``admit`` with the request's reservation (prompt tokens plus
``max_tokens``, and its price) and gets an :class:`~service.throttle.admission.Admission` to settle when the
request ends, or a ``RateLimited`` / ``BudgetExhausted`` error carrying headers and ``retry_after``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Protocol

from service.throttle.admission import Admission, Reserved
from service.throttle.headers import WindowState, rate_limit_headers
from service.throttle.plan import Planned, plan
from service.throttle.policy import money_to_units
from service.throttle.refusal import refusal
from service.throttle.store import STORES, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from decimal import Decimal

    from service.settings import Settings
    from service.throttle.policy import KeyLimits, Subject
    from service.throttle.store import ReservationStore, StoreFactory

#: A lease outlives the longest request by this much before it counts as leaked by a dead gateway.
LEASE_MARGIN_S = 60


class Throttle(Protocol):
    """Per-key admission control, shared by every gateway process that uses the same store."""

    async def admit(self, subject: Subject, limits: KeyLimits, tokens: int, cost: Decimal) -> Admission:
        """Reserve one request, ``tokens`` and ``cost`` against every limit, or raise the refusal."""
        ...

    async def start(self) -> None:
        """Prepare the store (optional; the first admission does it otherwise)."""
        ...

    async def close(self) -> None:
        """Send what waits to be settled, then close the store's connections."""
        ...


class LimitThrottle:
    """The ``Throttle`` over a ``ReservationStore``: one store call per admission; settling is queued."""

    def __init__(self, store: ReservationStore, *, prefix: str = "mw", lease_ttl_s: int = 360,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._prefix = prefix
        self._lease_ttl_s = lease_ttl_s
        self._clock = clock

    async def admit(self, subject: Subject, limits: KeyLimits, tokens: int, cost: Decimal) -> Admission:
        if limits.unlimited:
            return Admission(None, Reserved(), {})
        cost_units = money_to_units(cost, round_up=True)
        now = self._clock()
        planned = plan(limits.rules(), subject, prefix=self._prefix, now=now, tokens=tokens,
                       cost_units=cost_units, lease_ttl_s=self._lease_ttl_s)
        lease_id = os.urandom(8).hex()  # unique enough among the leases one key holds at once
        outcome = await self.store.reserve([item.check for item in planned], lease_id, now)
        headers = rate_limit_headers(_states(planned, outcome.counts, outcome.admitted))
        if not outcome.admitted:
            raise refusal(planned, outcome.counts, subject, headers)
        return Admission(self.store, _reserved(planned, lease_id, tokens, cost_units), headers)

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()


def _states(planned: list[Planned], counts: tuple[tuple[int, int], ...], admitted: bool) -> list[WindowState]:
    states = [item.state(count, admitted) for item, count in zip(planned, counts, strict=True)]
    return [state for state in states if state is not None]


def _reserved(planned: list[Planned], lease_id: str, tokens: int, cost_units: int) -> Reserved:
    def keys(kind: str, name: str | None = None) -> tuple[str, ...]:
        return tuple(item.check.keys[0] for item in planned
                     if item.check.kind == kind and (name is None or item.rule.name == name))

    return Reserved(token_keys=keys("window", "tpm"), tokens=tokens, budget_keys=keys("budget"),
                    cost_units=cost_units, lease_keys=keys("lease"), lease_id=lease_id)


def build_throttle(settings: Settings, *, prefix: str = "mw",
                   stores: Mapping[str, StoreFactory] = STORES) -> LimitThrottle:
    """The throttle for ``settings``: Redis when ``limits.redis_url`` is set, else this process's memory.

    Leases last the longest request (``server.request_timeout_s``) plus a margin. No I/O happens here.
    """
    store = open_store(settings.limits.redis_url or "memory://", stores)
    lease_ttl_s = int(settings.server.request_timeout_s) + LEASE_MARGIN_S
    return LimitThrottle(store, prefix=prefix, lease_ttl_s=lease_ttl_s)
