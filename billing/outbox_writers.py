"""How the local bus appends a group of events to ``usage_outbox``, per database, chosen by dialect name.

This is the request path's cost of metering, so it is kept to one statement and one commit per group:

- SQLite: a raw ``sqlite3`` connection of the bus's own, one ``executemany`` and one commit per group; no ORM
  session, no pooled-connection checkout, no aiosqlite round trip per statement (each of which was several
  event-loop wake-ups). When the bus's lock and the database's write lock are free (nearly always) it runs
  right on the event loop: a commit in WAL mode with ``synchronous=NORMAL`` is an append to the WAL file,
  cheaper than handing the work to a thread and back. Otherwise (the ledger drain or another process is
  writing) it waits in a worker thread. The pragmas are the app's (WAL, ``synchronous=NORMAL``), so a
  committed row survives a crash of the process, as before.
- Anything else (PostgreSQL): one SQLAlchemy Core ``executemany`` in an engine transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import insert

from billing.bus import encode_event
from billing.tables import OutboxRow

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncEngine

    from billing.events import UsageEvent

_SQLITE_INSERT = "INSERT INTO usage_outbox (request_id, payload, created_at) VALUES (?, ?, ?)"
# SQLAlchemy's storage format for DateTime on SQLite, so rows read back the same either way.
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_BUSY_MS = 30_000
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class OutboxWriter(Protocol):
    """Commits a group of events to the outbox; raises the driver's error (the bus turns it into
    ``BusUnavailable``)."""

    async def write(self, events: list[UsageEvent]) -> None:
        """Commit all of ``events`` in one transaction."""
        ...

    def close(self) -> None:
        """Release what the writer holds of its own (not the app's engine)."""
        ...


class SqliteOutboxWriter:
    """Appends over dedicated ``sqlite3`` connections: on the event loop when nothing is in the way, else in a
    worker thread (see the module docstring)."""

    def __init__(self, path: str, lock: threading.Lock) -> None:
        self._path = path
        # ``_inline`` never waits (busy timeout 0): it is used on the event loop. ``_waiting`` waits for the
        # database's write lock as long as the app's connections do, in a worker thread.
        self._inline: sqlite3.Connection | None = None
        self._waiting: sqlite3.Connection | None = None
        # Shared with the bus's ledger drain: a publish waiting for a drain's transaction wakes the moment it
        # ends, instead of in SQLite's busy-handler sleeps (1, 2, 5, 10 ms ...), which the request would wait.
        # It also keeps a write that timed out on the event loop (still running in its thread) and the next
        # group apart.
        self._lock = lock

    async def write(self, events: list[UsageEvent]) -> None:
        """Commit ``events``: inline if the lock and the database are free (a WAL append, no fsync: about
        0.1 ms, cheaper than two thread hand-offs), else in a worker thread that waits its turn."""
        stamp = datetime.now(UTC).strftime(SQLITE_TIME)
        rows = [(e.request_id, encode_event(e).decode(), stamp) for e in events]
        if self._lock.acquire(blocking=False):
            try:
                if self._try_inline(rows):
                    return
            finally:
                self._lock.release()
        await asyncio.get_running_loop().run_in_executor(None, self._insert, rows)

    def _try_inline(self, rows: list[tuple[str, str, str]]) -> bool:
        """Insert and commit without waiting; False (nothing written) if another connection holds the
        database's write lock."""
        try:
            if self._inline is None:
                self._inline = open_sqlite(self._path, busy_ms=0)
            with self._inline:  # commits, or rolls back on error
                self._inline.executemany(_SQLITE_INSERT, rows)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:  # extended codes carry the primary one in the low byte
                raise
            return False
        return True

    def _insert(self, rows: list[tuple[str, str, str]]) -> None:
        with self._lock:
            if self._waiting is None:
                self._waiting = open_sqlite(self._path)
            with self._waiting:  # commits, or rolls back on error
                self._waiting.executemany(_SQLITE_INSERT, rows)

    def close(self) -> None:
        """Close the connections (a later write opens new ones)."""
        with self._lock:
            for connection in (self._inline, self._waiting):
                if connection is not None:
                    connection.close()
            self._inline = self._waiting = None


class CoreOutboxWriter:
    """Appends with one SQLAlchemy Core ``executemany`` in an engine transaction (PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, events: list[UsageEvent]) -> None:
        """Insert and commit ``events``."""
        now = datetime.now(UTC)
        rows = [{"request_id": e.request_id, "payload": encode_event(e).decode(), "created_at": now}
                for e in events]
        async with self._engine.begin() as connection:
            await connection.execute(insert(OutboxRow), rows)

    def close(self) -> None:
        """Nothing of its own: the engine belongs to the app."""


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine that a second connection can open; None for anything else."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return None  # a private in-memory database is only reachable through the engine
    return path


def open_sqlite(path: str, busy_ms: int = _SQLITE_BUSY_MS) -> sqlite3.Connection:
    """A raw connection with the app's pragmas; ``check_same_thread`` off: callers serialise with a lock.

    It never checkpoints the WAL on commit (a checkpoint fsyncs, and a publish must not wait for that); the
    ledger drain checkpoints after each batch, off the request path, and the app's own connections keep
    SQLite's automatic checkpoints."""
    connection = sqlite3.connect(path, timeout=busy_ms / 1000, check_same_thread=False)
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # Switching modes needs an exclusive lock that SQLite does not wait for: if another connection holds
        # the file (e.g. the app's, switching it to WAL itself), go on; the mode only matters for speed.
        with contextlib.suppress(sqlite3.OperationalError):
            connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA busy_timeout={busy_ms}")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


def _sqlite_writer(engine: AsyncEngine, lock: threading.Lock) -> OutboxWriter:
    path = sqlite_file(engine)
    return SqliteOutboxWriter(path, lock) if path else CoreOutboxWriter(engine)


def _core_writer(engine: AsyncEngine, _lock: threading.Lock) -> OutboxWriter:
    return CoreOutboxWriter(engine)


_WRITERS: dict[str, Callable[[AsyncEngine, threading.Lock], OutboxWriter]] = {"sqlite": _sqlite_writer}


def outbox_writer(engine: AsyncEngine, lock: threading.Lock) -> OutboxWriter:
    """The cheapest writer for the engine's database (Core executemany where none is specific); ``lock``
    serialises its writes with the bus's other users of the same database file."""
    return _WRITERS.get(engine.dialect.name, _core_writer)(engine, lock)
