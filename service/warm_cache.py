"""Database lookups the request path makes on every call (API keys, prices), kept fresh while in use.

An entry is trusted for ``fresh_s`` after it was last read from the database. Entries used within
``active_s`` are read again, all in one call, every ``refresh_s`` by a background task, so a key or a model
in steady or bursty use never waits for the database. An entry idle for longer drops out; its next use
looks it up on the request path, and concurrent requests for it then share that one lookup (a burst after
a quiet spell costs one query, not one per request).

``clear`` forgets everything at once, and a lookup or refresh that was already running when it was called
stores nothing: a change made on this replica (a revoked key) holds from the next request on. A change
made on another replica holds here within ``fresh_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable

log = structlog.get_logger(__name__)
K = TypeVar("K", bound="Hashable")
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    read_at: float  # when the database read that produced ``value`` started
    used_at: float


class WarmCache(Generic[K, V]):
    """``get(key)`` from the database, cached; ``load_one`` raises for a key that has no value (not cached),
    ``load_many`` returns the values of those keys that still have one (the others drop out)."""

    def __init__(self, load_one: Callable[[K], Awaitable[V]],
                 load_many: Callable[[list[K]], Awaitable[dict[K, V]]], *, fresh_s: float, refresh_s: float,
                 active_s: float, name: str) -> None:
        self._load_one = load_one
        self._load_many = load_many
        self._fresh_s, self._refresh_s, self._active_s = fresh_s, refresh_s, active_s
        self._name = name
        self._entries: dict[K, _Entry[V]] = {}
        self._lookups: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by ``clear``: reads started before it store nothing
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry.read_at < self._fresh_s:
            entry.used_at = now
            return entry.value
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(key))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done: self._looked_up(key, done))
        return await asyncio.shield(lookup)  # a caller that goes away does not cancel the others' lookup

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def refresh(self) -> None:
        """Read every entry used within ``active_s`` again, in one call; forget the others."""
        started = time.monotonic()
        for key in [k for k, e in self._entries.items() if started - e.used_at > self._active_s]:
            del self._entries[key]
        if not self._entries:
            return
        generation, keys = self._generation, list(self._entries)
        values = await self._load_many(keys)
        if generation != self._generation:
            return
        for key in keys:
            entry = self._entries.get(key)
            if entry is None or entry.read_at >= started:
                continue  # gone meanwhile, or read again by a lookup that started later
            if key in values:
                entry.value, entry.read_at = values[key], started
            else:
                del self._entries[key]

    def start(self) -> None:
        """Start the background refresh (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name=f"refresh-{self._name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception:  # the database is away: entries age out and requests look them up themselves
                log.warning("cache_refresh_failed", cache=self._name, exc_info=True)

    async def _look_up(self, key: K) -> V:
        generation, started = self._generation, time.monotonic()
        value = await self._load_one(key)
        if generation == self._generation:
            self._entries[key] = _Entry(value, started, time.monotonic())
        return value

    def _looked_up(self, key: K, done: asyncio.Future[V]) -> None:
        self._lookups.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure every waiter gave up on is not logged as lost
