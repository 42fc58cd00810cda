"""The embedded default's consumer step on SQLite: one outbox batch into the ledger in one worker-thread call.

Through aiosqlite every statement of a batch (fetch, lock, delete, closed periods, prices, insert, commit) is
several hand-offs between the event loop and the driver's thread; together they cost the gateway about 6 ms
of CPU per batch whatever its size. Here one raw ``sqlite3`` transaction does the same steps:

``BEGIN IMMEDIATE`` (the database's single write lock: the same serialisation with ``close_period`` and other
consumers that ``LedgerWriter`` gets from its no-op write) → the oldest outbox rows → closed periods and
prices → ``INSERT … ON CONFLICT (request_id) DO NOTHING`` → delete those outbox rows → ``COMMIT``.

The entries are built by ``LedgerWriter.entry``, like on every other path, so prices, periods and
adjustments are decided by one piece of code. Killed at any point, the transaction leaves both tables as
they were: the batch is still in the outbox and the next drain writes it once.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.bus import decode_event
from billing.ledger_insert import LEDGER_COLUMNS
from billing.money import Price, as_utc
from billing.outbox_writers import SQLITE_TIME, open_sqlite
from billing.prices import PriceTable

if TYPE_CHECKING:
    import sqlite3

    from billing.events import UsageEvent
    from billing.ledger import LedgerWriter

_INSERT = (f"INSERT INTO ledger_entries ({', '.join(LEDGER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(LEDGER_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING")
_PRICE_COLUMNS = "model, input_per_million, output_per_million, currency, effective_from"


class SqliteLedgerDrain:
    """Moves outbox batches into the ledger over a dedicated ``sqlite3`` connection."""

    def __init__(self, path: str, lock: threading.Lock) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = lock  # the bus's outbox writer shares it: see SqliteOutboxWriter

    async def drain_once(self, writer: LedgerWriter, max_events: int) -> int:
        """Write up to ``max_events`` outbox events to the ledger; returns how many the batch held."""
        return await asyncio.get_running_loop().run_in_executor(None, self._drain, writer, max_events)

    def _drain(self, writer: LedgerWriter, max_events: int) -> int:
        with self._lock:
            if self._connection is None:
                self._connection = open_sqlite(self._path)
                self._connection.isolation_level = None  # transactions are begun explicitly below
            connection = self._connection
            if connection.execute("SELECT 1 FROM usage_outbox LIMIT 1").fetchone() is None:
                return 0  # idle: do not take the write lock that publishes need
            connection.execute("BEGIN IMMEDIATE")
            try:
                handled = _move(connection, writer, max_events)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return handled

    def close(self) -> None:
        """Close the connection (a later drain opens a new one)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _move(connection: sqlite3.Connection, writer: LedgerWriter, max_events: int) -> int:
    rows = connection.execute("SELECT seq, payload FROM usage_outbox ORDER BY seq LIMIT ?",
                              (max_events,)).fetchall()
    if not rows:
        return 0
    events = [decode_event(payload) for _, payload in rows]
    closed = {period for (period,) in connection.execute("SELECT period FROM closed_periods")}
    prices = _price_table(connection, events)
    now = datetime.now(UTC)
    unique = {e.request_id: e for e in events}  # a batch may carry a redelivery of its own event
    entries = [_params(writer.entry(unique[rid], prices, closed, now)) for rid in sorted(unique)]
    connection.executemany(_INSERT, entries)
    # The write lock is held since BEGIN IMMEDIATE, so no row below the last one read can appear meanwhile.
    connection.execute("DELETE FROM usage_outbox WHERE seq <= ?", (rows[-1][0],))
    return len(rows)


def _price_table(connection: sqlite3.Connection, events: list[UsageEvent]) -> PriceTable:
    models = sorted({e.model for e in events} | {e.base_model for e in events if e.base_model})
    query = f"SELECT {_PRICE_COLUMNS} FROM prices WHERE model IN ({', '.join('?' * len(models))})"
    return PriceTable(Price(model, Decimal(input_pm), Decimal(output_pm), currency,
                            as_utc(datetime.fromisoformat(start)))
                      for model, input_pm, output_pm, currency, start in connection.execute(query, models))


def _params(entry: dict[str, Any]) -> list[Any]:
    """An entry as SQLite values, stored exactly as SQLAlchemy stores them (decimal strings, UTC text times)."""
    values = []
    for name in LEDGER_COLUMNS:
        value = entry[name]
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, datetime):
            value = as_utc(value).strftime(SQLITE_TIME)
        values.append(value)
    return values
