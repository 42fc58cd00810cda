"""The embedded default's consumer step on SQLite: one outbox batch into the ledger in one worker-thread call.

Through aiosqlite every statement of a batch (fetch, lock, delete, closed periods, prices, insert, commit) is
several hand-offs between the event loop and the driver's thread; together they cost the gateway about 6 ms
of CPU per batch whatever its size. Here the batch is read, decoded and priced first, without the write lock
(publishes go on meanwhile), and then one raw ``sqlite3`` transaction does the writing:

``BEGIN IMMEDIATE`` (the database's single write lock: the same serialisation with ``close_period`` and other
consumers that ``LedgerWriter`` gets from its no-op write) → check that the oldest outbox rows are still the
ones read (seq and request id) and that no period closed meanwhile, else read and price them again under the
lock → ``INSERT … ON CONFLICT (request_id) DO NOTHING`` → add the entries that were new to the usage rollup →
delete those outbox rows → ``COMMIT``. Prices are
read before the lock: a price appended meanwhile is as if appended just after the commit.

The entries are built by ``LedgerWriter.entry``, like on every other path, so prices, periods and
adjustments are decided by one piece of code. Killed at any point, the transaction leaves both tables as
they were: the batch is still in the outbox and the next drain writes it once.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing import rollup
from billing.bus import decode_event
from billing.ledger_insert import LEDGER_COLUMNS
from billing.money import InstancePrice, Price, as_utc
from billing.outbox_writers import SQLITE_TIME, open_sqlite
from billing.prices import PriceTable, models_to_price

if TYPE_CHECKING:
    import sqlite3

    from billing.events import UsageEvent
    from billing.ledger import LedgerWriter

_INSERT = (f"INSERT INTO ledger_entries ({', '.join(LEDGER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(LEDGER_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING")
_PRICE_COLUMNS = "model, input_per_million, output_per_million, currency, effective_from, tier"  # both tiers
_INSTANCE_PRICE_COLUMNS = "model, instance_type, per_minute, currency, effective_from"


class SqliteLedgerDrain:
    """Moves outbox batches into the ledger over a dedicated ``sqlite3`` connection."""

    def __init__(self, path: str, lock: threading.Lock) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = lock  # the bus's outbox writer shares it: see SqliteOutboxWriter
        self._own = threading.Lock()  # one drain at a time on the connection

    async def drain_once(self, writer: LedgerWriter, max_events: int) -> int:
        """Write up to ``max_events`` outbox events to the ledger; returns how many the batch held."""
        return await asyncio.get_running_loop().run_in_executor(None, self._drain, writer, max_events)

    def _drain(self, writer: LedgerWriter, max_events: int) -> int:
        with self._own:
            if self._connection is None:
                self._connection = open_sqlite(self._path)
                self._connection.isolation_level = None  # transactions are begun explicitly below
            connection = self._connection
            # The batch is read and priced before taking the write lock, so publishes do not wait for it;
            # under the lock it is used only if the outbox prefix and the closed periods are unchanged.
            plan = _prepare(connection, writer, max_events)
            if plan is None:
                return 0  # idle: do not take the write lock that publishes need
            with self._lock:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    handled = _apply(connection, plan) or _move(connection, writer, max_events)
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            # The bus's connections never checkpoint on commit (see open_sqlite); this one does it here, after
            # the lock is released: a PASSIVE checkpoint does not block writers, and its fsync is off the
            # request path.
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return handled

    def close(self) -> None:
        """Close the connection (a later drain opens a new one)."""
        with self._own:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


@dataclass
class _Plan:
    """A batch read and priced outside the write lock: its outbox keys, the closed periods it saw, its rows."""

    keys: list[tuple[int, str]]
    closed: set[str]
    entries: list[dict[str, Any]]
    params: list[list[Any]]  # the entries as SQLite values, built before the lock too


def _prepare(connection: sqlite3.Connection, writer: LedgerWriter, max_events: int) -> _Plan | None:
    rows = connection.execute("SELECT seq, request_id, payload FROM usage_outbox ORDER BY seq LIMIT ?",
                              (max_events,)).fetchall()
    if not rows:
        return None
    closed = _closed(connection)
    entries = _entries(connection, writer, [payload for _, _, payload in rows], closed)
    return _Plan([(seq, rid) for seq, rid, _ in rows], closed, entries,
                 [_params(entry, LEDGER_COLUMNS) for entry in entries])


def _apply(connection: sqlite3.Connection, plan: _Plan) -> int:
    """Write a prepared batch if it is still the oldest part of the outbox (same seqs and request ids, which a
    reused seq could not fake) and no period closed meanwhile; returns its size, or 0 to redo it here."""
    last = plan.keys[-1][0]
    now = connection.execute("SELECT seq, request_id FROM usage_outbox WHERE seq <= ? ORDER BY seq",
                             (last,)).fetchall()
    if now != plan.keys or _closed(connection) != plan.closed:
        return 0
    _write(connection, plan.entries, plan.params)
    connection.execute("DELETE FROM usage_outbox WHERE seq <= ?", (last,))
    return len(plan.keys)


def _move(connection: sqlite3.Connection, writer: LedgerWriter, max_events: int) -> int:
    """Read, price and write the oldest batch, all under the write lock (when a prepared batch went stale)."""
    rows = connection.execute("SELECT seq, payload FROM usage_outbox ORDER BY seq LIMIT ?",
                              (max_events,)).fetchall()
    if not rows:
        return 0
    entries = _entries(connection, writer, [payload for _, payload in rows], _closed(connection))
    _write(connection, entries, [_params(entry, LEDGER_COLUMNS) for entry in entries])
    # The write lock is held since BEGIN IMMEDIATE, so no row below the last one read can appear meanwhile.
    connection.execute("DELETE FROM usage_outbox WHERE seq <= ?", (rows[-1][0],))
    return len(rows)


def _write(connection: sqlite3.Connection, entries: list[dict[str, Any]], params: list[list[Any]]) -> None:
    """Insert the entries (``params``: the same as SQLite values) whose request id is not in the ledger yet, and
    add those to the rollup (under the write lock, so no other writer adds one of them meanwhile)."""
    ids = [entry["request_id"] for entry in entries]
    known = {rid for (rid,) in connection.execute(
        f"SELECT request_id FROM ledger_entries WHERE request_id IN ({', '.join('?' * len(ids))})", ids)}
    new = [i for i, rid in enumerate(ids) if rid not in known]
    connection.executemany(_INSERT, [params[i] for i in new])
    connection.executemany(rollup.SQLITE_UPSERT, [_params(row, rollup.COLUMNS)
                                                  for row in rollup.deltas(entries[i] for i in new)])


def _closed(connection: sqlite3.Connection) -> set[str]:
    return {period for (period,) in connection.execute("SELECT period FROM closed_periods")}


def _entries(connection: sqlite3.Connection, writer: LedgerWriter, payloads: list[str],
             closed: set[str]) -> list[dict[str, Any]]:
    events = [decode_event(payload) for payload in payloads]
    prices = _price_table(connection, events)
    now = datetime.now(UTC)
    unique = {e.request_id: e for e in events}  # a batch may carry a redelivery of its own event
    return [writer.entry(unique[rid], prices, closed, now) for rid in sorted(unique)]


def _price_table(connection: sqlite3.Connection, events: list[UsageEvent]) -> PriceTable:
    models, instance_models = (sorted(names) for names in models_to_price(events))
    query = f"SELECT {_PRICE_COLUMNS} FROM prices WHERE model IN ({', '.join('?' * len(models))})"
    prices = [Price(model, Decimal(input_pm), Decimal(output_pm), currency, _moment(start), tier)
              for model, input_pm, output_pm, currency, start, tier in connection.execute(query, models)]
    query = (f"SELECT {_INSTANCE_PRICE_COLUMNS} FROM instance_prices "
             f"WHERE model IN ({', '.join('?' * len(instance_models))})")
    instance_prices = [InstancePrice(model, instance_type, Decimal(per_minute), currency, _moment(start))
                       for model, instance_type, per_minute, currency, start
                       in (connection.execute(query, instance_models) if instance_models else ())]
    return PriceTable(prices, instance_prices)


def _moment(stored: str) -> datetime:
    return as_utc(datetime.fromisoformat(stored))


def _params(entry: dict[str, Any], columns: tuple[str, ...]) -> list[Any]:
    """A row as SQLite values, stored exactly as SQLAlchemy stores them (decimal strings, UTC text times)."""
    values = []
    for name in columns:
        value = entry[name]
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, datetime):
            value = as_utc(value).strftime(SQLITE_TIME)
        values.append(value)
    return values
