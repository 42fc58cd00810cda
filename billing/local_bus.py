"""The embedded bus: an outbox table in the app database (SQLite by default), drained by the consumer.

An event is committed before ``publish`` returns, so a crash right after the response loses nothing. The
consumer deletes rows only after the ledger committed them (rows are deleted by ``seq``, never by range,
because on PostgreSQL a lower ``seq`` may commit after a higher one).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from billing.bus import Batch, BusOptions, BusUnavailable, decode_event
from billing.outbox_writers import outbox_writer, sqlite_file
from billing.sqlite_drain import SqliteLedgerDrain
from billing.tables import OutboxRow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from billing.events import UsageEvent
    from billing.ledger import LedgerWriter
    from meterway.db import Database
    from meterway.settings import Settings


class LocalOutboxBus:
    """``UsageBus`` over the ``usage_outbox`` table."""

    name = "local"

    def __init__(self, database: Database, options: BusOptions) -> None:
        self._sessions = database.sessions
        self._options = options
        lock = threading.Lock()  # in-process writers of the database file take turns without busy-waiting
        self._writer = outbox_writer(database.engine, lock)
        path = sqlite_file(database.engine)
        self._drain = SqliteLedgerDrain(path, lock) if path else None
        self._group = GroupCommit(self.publish_many)

    async def publish(self, event: UsageEvent) -> None:
        """Commit the event to the outbox (concurrent publishes share one transaction)."""
        await self._group.submit(event)

    async def publish_many(self, events: list[UsageEvent]) -> None:
        """Commit several events in one transaction (the spool forwarder and load tests use this)."""
        try:
            async with asyncio.timeout(self._options.publish_timeout_s):
                await self._writer.write(events)
        except (SQLAlchemyError, sqlite3.Error, OSError, TimeoutError) as exc:
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

    async def drain_into(self, writer: LedgerWriter, max_events: int) -> int | None:
        """Move one batch into the ledger in a single transaction where the database allows it (SQLite);
        None where it does not, and the consumer goes through ``fetch`` and ``LedgerWriter.write``."""
        if self._drain is None:
            return None
        return await self._drain.drain_once(writer, max_events)

    async def pending(self) -> int:
        """Events not yet in the ledger (for health and tests)."""
        from sqlalchemy import func

        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxRow)) or 0)

    async def close(self) -> None:
        """Release the bus's own connections (the app's database stays open)."""
        self._writer.close()
        if self._drain is not None:
            self._drain.close()


class GroupCommit:
    """Coalesces concurrent publishes into one transaction. No timer: a lone publish is never delayed.

    The write runs in a task of its own, so a request cancelled while waiting still gets its event written.
    """

    def __init__(self, write: Callable[[list[UsageEvent]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: list[tuple[UsageEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, event: UsageEvent) -> None:
        """Return once ``event`` is committed; raise what the write raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # a cancelled waiter must not leave an unretrieved error behind
        self._pending.append((event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write([event for event, _ in batch])
            except Exception as exc:  # handed to every waiter; the Meter spools their events
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def open_local_bus(settings: Settings, database: Database, options: BusOptions) -> LocalOutboxBus:
    """Registry factory for the local bus."""
    return LocalOutboxBus(database, options)
