"""Admission: check and reserve every limit of a key (and its tenant) before the model runs.

``build_throttle(settings)`` picks the store from ``METERWAY_REDIS_URL`` (empty: in memory) and returns a
:class:`Throttle`. The request path calls ``admit`` with the request's reservation (prompt tokens plus
``max_tokens``, and its price) and gets an :class:`~service.throttle.admission.Admission` to settle when the
request ends, or a ``RateLimited`` / ``BudgetExhausted`` error carrying headers and ``retry_after``.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Protocol

from service.throttle.admission import Admission, Reserved
from service.throttle.headers import rate_limit_headers
from service.throttle.plan import KeyPlan, plan_key
from service.throttle.policy import money_to_units
from service.throttle.refusal import refusal
from service.throttle.stores import STORES, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from decimal import Decimal

    from meterway.settings import Settings
    from service.throttle.policy import KeyLimits, Subject
    from service.throttle.store import ReservationStore
    from service.throttle.stores import StoreFactory

#: A lease outlives the longest request by this much before it counts as leaked by a dead gateway.
LEASE_MARGIN_S = 60
#: Key plans kept (one per key in use); past this many, the cache starts over.
PLAN_CACHE_SIZE = 4096


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
        # By key, tenant and the limits object (kept in the entry, so that its id stays its own): the
        # gateway keeps a key's limits between requests, and hashing them by value costs more.
        self._plans: dict[tuple[str, str, int], tuple[KeyLimits, KeyPlan]] = {}

    async def admit(self, subject: Subject, limits: KeyLimits, tokens: int, cost: Decimal) -> Admission:
        if limits.unlimited:
            return Admission(None, Reserved(), {})
        cost_units = money_to_units(cost, round_up=True)
        now = self._clock()
        key_plan = self._plan(subject, limits, now)
        checks = key_plan.checks(now, tokens, cost_units)
        lease_id = _lease_id()
        outcome = await self.store.reserve(checks, lease_id, now)
        headers = rate_limit_headers(key_plan.states(now, checks, outcome.counts, outcome.admitted))
        if not outcome.admitted:
            raise refusal(key_plan.planned(now, checks), outcome.counts, subject, headers)
        reserved = Reserved(key_plan.token_keys, tokens, key_plan.budget_keys, cost_units, key_plan.lease_keys,
                            lease_id)
        return Admission(self.store, reserved, headers)

    def _plan(self, subject: Subject, limits: KeyLimits, now: float) -> KeyPlan:
        """The key's plan at ``now``, kept until one of its windows or budget periods turns over."""
        cache_key = (subject.key_id, subject.tenant_id, id(limits))
        cached = self._plans.get(cache_key)
        if cached is not None and cached[0] is limits and cached[1].covers(now):
            return cached[1]
        if len(self._plans) >= PLAN_CACHE_SIZE:
            self._plans.clear()
        key_plan = plan_key(limits.rules(), subject, prefix=self._prefix, now=now, lease_ttl_s=self._lease_ttl_s)
        self._plans[cache_key] = (limits, key_plan)
        return key_plan

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()


def _lease_id() -> str:
    """An id unique enough among the leases one key holds at once, across gateway processes.

    Not ``os.urandom``: a system call on every admission showed in profiles of a loaded gateway, and the
    ``random`` module's generator (seeded from the OS, re-seeded in a forked child) is enough for ids.
    """
    return f"{random.getrandbits(64):016x}"


def build_throttle(settings: Settings, *, prefix: str = "mw",
                   stores: Mapping[str, StoreFactory] = STORES) -> LimitThrottle:
    """The throttle for ``settings``: Redis when ``limits.redis_url`` is set, else this process's memory.

    Leases last the longest request (``server.request_timeout_s``) plus a margin. No I/O happens here.
    """
    store = open_store(settings.limits.redis_url or "memory://", stores)
    lease_ttl_s = int(settings.server.request_timeout_s) + LEASE_MARGIN_S
    return LimitThrottle(store, prefix=prefix, lease_ttl_s=lease_ttl_s)
