"""A granted admission: its headers, and the one settlement that gives back what was not used.

``settle`` and ``release`` are idempotent and the first call wins, so the request path may call them from
every exit (completion, error, client disconnect, timeout) and the concurrency slot is freed exactly once.
A settlement never waits on I/O (the Redis store sends it with the tenant's next admission, or a moment
later), so a request cancelled while settling still returns its slot.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import structlog

from meterway.errors import MeterwayError
from service.throttle.policy import money_to_units
from service.throttle.store import Adjustment

if TYPE_CHECKING:
    from types import TracebackType

    from service.throttle.store import ReservationStore

log = structlog.get_logger(__name__)


class Reserved(NamedTuple):
    """What one admission holds: the counters to give back to and the leases to free.

    A tuple: one is made for every admission, and a tuple is made several times faster than a frozen
    dataclass.
    """

    token_keys: tuple[str, ...] = ()
    tokens: int = 0
    budget_keys: tuple[str, ...] = ()
    cost_units: int = 0
    lease_keys: tuple[str, ...] = ()
    lease_id: str = ""


class Admission:
    """Permission to run one request; settle (or release) it when the request ends."""

    def __init__(self, store: ReservationStore | None, reserved: Reserved, headers: dict[str, str]) -> None:
        self._store = store
        self._reserved = reserved
        self._headers = headers
        self._done = False

    @property
    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the response (empty for a key without limits)."""
        return dict(self._headers)

    @property
    def settled(self) -> bool:
        return self._done

    async def settle(self, tokens_used: int, cost_used: Decimal) -> None:
        """Record what the request used: give back the unused reservation, free the slot. Idempotent."""
        if self._done:
            return
        self._done = True
        if self._store is None:
            return
        held = self._reserved
        token_delta = tokens_used - held.tokens
        cost_delta = money_to_units(cost_used, round_up=True) - held.cost_units
        changes = [Adjustment(key, token_delta) for key in held.token_keys]
        changes += [Adjustment(key, cost_delta) for key in held.budget_keys]
        changes = [change for change in changes if change.delta]
        if not changes and not held.lease_keys:
            return
        try:
            # Stores apply or queue this without waiting on I/O, so a cancelled request cannot cut it short.
            await self._store.adjust(changes, held.lease_keys, held.lease_id)
        except MeterwayError as exc:
            # The reservation stays counted (never an overspend) and the lease lapses by its TTL.
            log.warning("throttle.settle_failed", error=exc.message, lease=held.lease_id)

    async def release(self) -> None:
        """The request failed before producing anything: give back all tokens and money. Idempotent.

        The request itself still counts against requests per minute and per day.
        """
        await self.settle(0, Decimal(0))

    async def __aenter__(self) -> Admission:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        """Release whatever was not settled inside the block (errors, cancellations)."""
        await self.release()
