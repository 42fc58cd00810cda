"""The embedded bus: an outbox table in the app database (SQLite by default), drained by the consumer.

An event is committed before ``publish`` returns, so a crash right after the response loses nothing. The
consumer deletes rows only after the ledger committed them (rows are deleted by ``seq``, never by range,
because on PostgreSQL a lower ``seq`` may commit after a higher one).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from billing.bus import Batch, BusOptions, BusUnavailable, decode_event, encode_event
from billing.tables import OutboxRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from billing.events import UsageEvent
    from service.db import Database
    from service.settings import Settings


class LocalOutboxBus:
    """``UsageBus`` over the ``usage_outbox`` table."""

    name = "local"

    def __init__(self, database: Database, options: BusOptions) -> None:
        self._sessions = database.sessions
        self._options = options

    async def publish(self, event: UsageEvent) -> None:
        """Commit the event to the outbox."""
        await self.publish_many([event])

    async def publish_many(self, events: list[UsageEvent]) -> None:
        """Commit several events in one transaction (the spool forwarder and load tests use this)."""
        now = datetime.now(UTC)
        rows = [{"request_id": e.request_id, "payload": encode_event(e).decode(), "created_at": now}
                for e in events]
        try:
            async with asyncio.timeout(self._options.publish_timeout_s):
                async with self._sessions() as session, session.begin():
                    await session.execute(insert(OutboxRow), rows)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"outbox write failed: {exc}") from exc

    async def fetch(self, max_events: int, timeout_s: float) -> Batch:
        """The oldest ``max_events`` rows; waits up to ``timeout_s`` for the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            async with self._sessions() as session:
                rows = (await session.execute(
                    select(OutboxRow.seq, OutboxRow.payload).order_by(OutboxRow.seq).limit(max_events))).all()
            if rows or loop.time() >= deadline:
                break
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
        seqs = [row.seq for row in rows]

        async def ack_in(session: AsyncSession) -> None:
            await session.execute(delete(OutboxRow).where(OutboxRow.seq.in_(seqs)))

        async def ack() -> None:
            async with self._sessions() as session, session.begin():
                await ack_in(session)

        return Batch([decode_event(row.payload) for row in rows], ack, ack_in)

    async def pending(self) -> int:
        """Events not yet in the ledger (for health and tests)."""
        from sqlalchemy import func

        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxRow)) or 0)

    async def close(self) -> None:
        """Nothing to release: the database belongs to the app."""


def open_local_bus(settings: Settings, database: Database, options: BusOptions) -> LocalOutboxBus:
    """Registry factory for the local bus."""
    return LocalOutboxBus(database, options)
