"""The usage event bus: one small interface, implementations chosen by name from a registry.

``publish`` is durable when it returns. ``fetch`` hands the consumer a batch that is delivered at least once:
until ``Batch.ack()`` is called (after the ledger commit) the same events come back to some consumer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import msgspec

from billing.events import UsageEvent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from meterway.db import Database
    from meterway.settings import Settings


class BusUnavailable(Exception):
    """The bus did not take an event (unreachable, timed out); the caller spools it."""


@dataclass
class Batch:
    """Events fetched together; ``ack`` removes them from the bus once the ledger holds them.

    A bus that lives in the ledger's database sets ``ack_in``: the consumer then acks inside the ledger
    transaction itself, so the entries and the removal commit together (and one commit is saved).
    """

    events: list[UsageEvent]
    ack: Callable[[], Awaitable[None]] = field(repr=False)
    ack_in: Callable[[AsyncSession], Awaitable[None]] | None = field(default=None, repr=False)


class UsageBus(Protocol):
    """Where the request path puts usage events and the ledger consumer takes them from."""

    name: str

    async def publish(self, event: UsageEvent) -> None:
        """Make ``event`` durable on the bus, or raise ``BusUnavailable``."""
        ...

    async def fetch(self, max_events: int, timeout_s: float) -> Batch:
        """Up to ``max_events`` unacknowledged events; an empty batch after ``timeout_s`` without any."""
        ...

    async def pending(self) -> int:
        """Events published and not yet written to the ledger (for health checks and tests)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class BusOptions:
    """What a bus is built from; names default per settings and can be overridden (tests, a second stream)."""

    stream: str = "METERWAY_USAGE"
    subject: str = "meterway.usage"
    durable: str = "meterway-ledger"
    ack_wait_s: float = 30.0
    publish_timeout_s: float = 2.0


BusFactory = Callable[["Settings", "Database", BusOptions], UsageBus]


def encode_event(event: UsageEvent) -> bytes:
    return msgspec.json.encode(event)


def decode_event(raw: bytes | str) -> UsageEvent:
    return msgspec.json.decode(raw, type=UsageEvent)
