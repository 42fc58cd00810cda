"""The shared store: counters in Redis, so that every gateway process enforces the same limits.

The connection comes from the ``limits`` library (``storage_from_string("async+redis://...")`` with the
``redis.asyncio`` client). Its strategies check one limit per call, though, and a check followed by a separate
increment lets racing replicas all pass on the same old counter; so admission runs our own Lua script
(``lua/admit.lua``, loaded once with ``register_script`` and called by EVALSHA) that checks and reserves all
of a request's counters at once: one round trip, atomic.

Settlements (giving back unused tokens and money, freeing the lease) cost no round trip of their own when
traffic flows: they wait, at most ``settle_delay_s``, to ride along with the tenant's next admission, which
applies them before its checks in the same script call; otherwise a timer sends them, batched. A gateway
that dies with settlements waiting loses only those give-backs: its leases lapse by their TTL, and the
unreturned reservation stays counted (never an overspend).

A tenant's admissions made in one turn of the event loop (a burst of requests arriving together) share one
script call, which checks and reserves them one after the other, each seeing what the ones before it took:
the per-call work of Redis (the script's setup, reading the counters, writing each counter and lease set's
expiry) is paid once for all of them. Calls go out over one dedicated connection, driven directly once
redis-py has opened it; the calls made in one turn of the event loop go out in one write (``batching.py``).

Every request sent on the wire is counted (``round_trips``: by the connection class for redis-py's own
commands, by the batcher for script calls), so tests and benchmarks can hold the store to one round trip per
admission.
"""

from __future__ import annotations

import asyncio
import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

import structlog
from limits.storage import storage_from_string
from redis.asyncio import Connection, Redis
from redis.exceptions import RedisError

from meterway.errors import Unavailable
from service.throttle.batching import Arg, ScriptBatcher, Tally
from service.throttle.store import Adjustment, Check, Outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import AsyncScript

#: Longest a settlement waits for the tenant's next admission before it is sent on its own.
SETTLE_DELAY_S = 0.005
#: When Redis could not take settlements, how long before they are tried again.
RETRY_DELAY_S = 1.0

log = structlog.get_logger(__name__)

class _Asked:
    """One admission waiting for its tenant's script call: its checks and lease, its part of the call (the
    counters' keys and limits, its amounts and weights) and its outcome."""

    __slots__ = ("checks", "future", "keys", "lease_id", "now", "shape", "varying")

    def __init__(self, checks: Sequence[Check], now: float, lease_id: str, keys: list[str], shape: list[Arg],
                 varying: list[Arg], future: asyncio.Future[Outcome]) -> None:
        self.checks = checks
        self.now = now
        self.lease_id = lease_id
        self.keys = keys
        self.shape = shape
        self.varying = varying
        self.future = future


def _counting_connection(tally: Tally) -> type[Connection]:
    """A connection class that counts each request it writes (one per command or pipeline)."""

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            tally.sent += 1
            await super().send_packed_command(command, check_health)

    return CountingConnection


def _unreachable(exc: Exception) -> Unavailable:
    # Fail closed: admitting without the shared counters could overspend a budget across replicas.
    return Unavailable(f"The rate-limit store is unreachable ({type(exc).__name__}).",
                       code="limits_unavailable", retry_after=1.0)


def _script(name: str) -> str:
    return resources.files("service.throttle").joinpath("lua", name).read_text()


class RedisStore:
    """``ReservationStore`` in Redis; state outlives gateway restarts and is shared across replicas."""

    def __init__(self, client: Redis, tally: Tally | None = None, owner: Any = None,
                 settle_delay_s: float = SETTLE_DELAY_S) -> None:
        self._client = client
        self._tally = tally or Tally()
        self._owner = owner  # the limits storage that opened the connection (kept for its lifetime)
        self._script: AsyncScript = client.register_script(_script("admit.lua"))
        self._batcher = ScriptBatcher(client, self._script, self._tally)
        self._delay = settle_delay_s
        # Waiting settlements by hash tag (tenant): (key, delta or 'lease', lease id or '-').
        self._waiting: dict[str, list[tuple[str, str, str]]] = {}
        # When each tag's waiting settlements are due to go out on their own (event loop time).
        self._due: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        # Admissions of this loop turn by tag, sent together as one script call; and calls awaiting replies.
        self._asking: dict[str, list[_Asked]] = {}
        self._in_flight: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_url(cls, url: str, *, settle_delay_s: float = SETTLE_DELAY_S, **options: Any) -> RedisStore:
        """Connect to ``redis://host:port/db`` through the ``limits`` library's async Redis storage."""
        tally = Tally()
        options["connection_class"] = _counting_connection(tally)
        storage: Any = storage_from_string(f"async+{url}", implementation="redispy", **options)
        return cls(storage.bridge.get_connection(), tally, storage, settle_delay_s)

    @property
    def client(self) -> Redis:
        """The Redis client (tests use it to inspect and clean up keys)."""
        return self._client

    @property
    def round_trips(self) -> int:
        return self._tally.sent

    async def reserve(self, checks: Sequence[Check], lease_id: str, now: float) -> Outcome:
        """Queue this admission into its tenant's call of this loop turn, and wait for its outcome."""
        keys: list[str] = []
        shape: list[Arg] = []
        varying: list[Arg] = []
        for check in checks:
            keys += check.keys
            shape += check.kind, check.limit, check.ttl_s
            varying += check.amount, check.weight
        tag = _hash_tag(keys[0]) if keys else ""
        loop = asyncio.get_running_loop()
        asked = _Asked(checks, now, lease_id, keys, shape, varying, loop.create_future())
        batch = self._asking.get(tag)
        if batch is None:
            self._asking[tag] = [asked]
            loop.call_soon(self._send_asked, tag)
        else:
            batch.append(asked)
        return await asked.future

    def _send_asked(self, tag: str) -> None:
        """Send the tag's admissions of this loop turn, after its waiting settlements, as one script call."""
        asked = self._asking.pop(tag, None)
        if not asked:
            return
        riding = self._waiting.pop(tag, [])
        self._due.pop(tag, None)
        keys, args = _settlement_args(riding)
        args.append(len(asked))
        previous: _Asked | None = None
        for one in asked:
            args += one.now, one.lease_id, len(one.checks)
            if previous is not None and one.keys == previous.keys and one.shape == previous.shape:
                args.append("=")  # a burst of one key's requests: its counters and limits go once
            else:
                args.append("+")
                args += one.shape
                keys += one.keys
            args += one.varying
            previous = one
        reply = self._batcher.submit(keys, args)
        self._in_flight.add(reply)
        reply.add_done_callback(functools.partial(self._answer, tag, riding, asked))
        reply.add_done_callback(self._in_flight.discard)

    def _answer(self, tag: str, riding: list[tuple[str, str, str]], asked: list[_Asked],
                reply: asyncio.Future[Any]) -> None:
        """Hand each admission its outcome; one whose caller was cancelled meanwhile gives back what it got."""
        failure = _failure(reply)
        if failure is not None:
            self._wait(tag, riding)  # the timer tries them again
            for one in asked:
                if not one.future.done():
                    one.future.set_exception(failure)
            return
        numbers: list[int] = reply.result()
        start = 0
        for one in asked:
            end = start + 1 + 2 * len(one.checks)
            outcome = Outcome(numbers[start] == 1, tuple(zip(numbers[start + 1:end:2], numbers[start + 2:end:2],
                                                             strict=True)))
            start = end
            if not one.future.done():
                one.future.set_result(outcome)
            elif outcome.admitted:
                self._undo(one.checks, one.lease_id)

    def _undo(self, checks: Sequence[Check], lease_id: str) -> None:
        for check in checks:
            if check.kind == "lease":
                self._wait(_hash_tag(check.keys[0]), [(check.keys[0], "lease", lease_id)])
            elif check.amount:
                self._wait(_hash_tag(check.keys[0]), [(check.keys[0], str(-check.amount), "-")])

    async def adjust(self, adjustments: Sequence[Adjustment], lease_keys: Sequence[str],
                     lease_id: str) -> None:
        """Queue the give-backs for the tenant's next admission (or the timer); no I/O here."""
        for change in adjustments:
            if change.delta:
                self._wait(_hash_tag(change.key), [(change.key, str(change.delta), "-")])
        for key in lease_keys:
            self._wait(_hash_tag(key), [(key, "lease", lease_id)])

    async def start(self) -> None:
        """Load the script now, so that the first admission is a single EVALSHA too."""
        self._script.sha = await self._client.script_load(self._script.script)

    async def flush(self) -> None:
        """Send queued admissions and wait for every call on the wire, then send every waiting settlement now
        (one call per tenant)."""
        for tag in list(self._asking):
            self._send_asked(tag)
        if self._in_flight:
            await asyncio.wait(list(self._in_flight))
        await self._batcher.drain()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._send_waiting(list(self._waiting))

    async def _send_waiting(self, tags: list[str]) -> None:
        """Send the settlements waiting under ``tags``, one call per tag; on failure retry them later."""
        for tag in tags:
            riding = self._waiting.pop(tag, [])
            self._due.pop(tag, None)
            if not riding:
                continue
            try:
                await self._settle_now(riding)
            except Unavailable:
                self._wait(tag, riding, RETRY_DELAY_S)

    async def close(self) -> None:
        await asyncio.gather(*self._flushing, return_exceptions=True)
        await self.flush()
        if self._timer is not None:  # Redis is down: what could not be given back stays counted
            self._timer.cancel()
            self._timer = None
            log.warning("throttle.settlements_dropped", count=sum(map(len, self._waiting.values())))
        await self._batcher.close()
        await self._client.aclose()

    async def _settle_now(self, riding: list[tuple[str, str, str]]) -> None:
        """One script call that only settles (no admissions)."""
        keys, args = _settlement_args(riding)
        args.append(0)
        try:
            await self._batcher.call(keys, args)
        except (RedisError, OSError) as exc:
            raise _unreachable(exc) from exc

    def _wait(self, tag: str, settlements: list[tuple[str, str, str]], delay: float | None = None) -> None:
        """Queue ``settlements`` for the tag's next admission; due on their own after ``delay``."""
        if not settlements:
            return
        waiting = self._waiting.get(tag)
        if waiting is not None:
            waiting.extend(settlements)
            return
        self._waiting[tag] = list(settlements)
        loop = asyncio.get_running_loop()
        due = self._due[tag] = loop.time() + (self._delay if delay is None else delay)
        if self._timer is None or due < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(due, self._flush_later)

    def _flush_later(self) -> None:
        """Send the tags whose settlements found no admission to ride with in time; wait for the rest.

        Under steady traffic each tag's next admission takes its settlements first, so this mostly only
        re-arms itself: no task and no call of its own.
        """
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = [tag for tag, when in self._due.items() if when <= now]
        if due:
            task = asyncio.ensure_future(self._send_waiting(due))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        later = [when for tag, when in self._due.items() if when > now]
        if later:
            self._timer = loop.call_at(min(later), self._flush_later)


def _settlement_args(riding: list[tuple[str, str, str]]) -> tuple[list[str], list[Arg]]:
    """The script's keys and arguments for the settlements that ride along, in ``lua/admit.lua``'s order."""
    args: list[Arg] = [len(riding)]
    for _key, delta, lease in riding:
        args += delta, lease
    return [key for key, _delta, _lease in riding], args


def _failure(reply: asyncio.Future[Any]) -> BaseException | None:
    """Why a script call failed, as the admissions waiting for it should see it; ``None`` if it did not."""
    if reply.cancelled():
        return Unavailable("The rate-limit store call was cancelled.", code="limits_unavailable", retry_after=1.0)
    error = reply.exception()
    if isinstance(error, RedisError | OSError):
        return _unreachable(error)
    return error


def _hash_tag(key: str) -> str:
    """The Redis Cluster hash tag of a key (``{tenant}``): settlements ride only with the same slot."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start >= 0 and end > start else key
