"""The shared store: counters in Redis, so that every gateway process enforces the same limits.

The connection comes from the ``limits`` library (``storage_from_string("async+redis://...")`` with the
``redis.asyncio`` client). Its strategies check one limit per call, though, and a check followed by a separate
increment lets racing replicas all pass on the same old counter; so admission runs our own Lua script
(``lua/reserve.lua``, loaded once with ``register_script`` and called by EVALSHA) that checks and reserves all
of a request's counters at once: one round trip, atomic. ``lua/settle.lua`` gives back the unused part.

Every request sent on the wire is counted (``round_trips``) by the connection class, so tests and benchmarks
can hold the store to one round trip per admission.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from limits.storage import storage_from_string
from redis.asyncio import Connection, Redis
from redis.exceptions import RedisError

from service.errors import Unavailable
from service.throttle.store import Adjustment, Check, Outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import AsyncScript


class _Tally:
    """A mutable count shared by one store's connections."""

    def __init__(self) -> None:
        self.sent = 0


def _counting_connection(tally: _Tally) -> type[Connection]:
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

    def __init__(self, client: Redis, tally: _Tally | None = None, owner: Any = None) -> None:
        self._client = client
        self._tally = tally or _Tally()
        self._owner = owner  # the limits storage that opened the connection (kept for its lifetime)
        self._reserve: AsyncScript = client.register_script(_script("reserve.lua"))
        self._settle: AsyncScript = client.register_script(_script("settle.lua"))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """Connect to ``redis://host:port/db`` through the ``limits`` library's async Redis storage."""
        tally = _Tally()
        options["connection_class"] = _counting_connection(tally)
        storage: Any = storage_from_string(f"async+{url}", implementation="redispy", **options)
        return cls(storage.bridge.get_connection(), tally, storage)

    @property
    def client(self) -> Redis:
        """The Redis client (tests use it to inspect and clean up keys)."""
        return self._client

    @property
    def round_trips(self) -> int:
        return self._tally.sent

    async def reserve(self, checks: Sequence[Check], lease_id: str, now: float) -> Outcome:
        keys: list[str] = []
        words: list[str] = [repr(now), lease_id, str(len(checks))]
        for check in checks:
            keys.extend(check.keys)
            words += [check.kind, str(check.limit), str(check.amount), repr(check.weight), str(check.ttl_s)]
        try:
            reply = await self._reserve(keys=keys, args=[" ".join(words)])
        except (RedisError, OSError) as exc:
            raise _unreachable(exc) from exc
        numbers = [int(word) for word in reply.split()]
        counts = tuple((numbers[i], numbers[i + 1]) for i in range(1, len(numbers), 2))
        return Outcome(numbers[0] == 1, counts)

    async def adjust(self, adjustments: Sequence[Adjustment], lease_keys: Sequence[str],
                     lease_id: str) -> None:
        changes = [change for change in adjustments if change.delta]
        keys = [change.key for change in changes] + list(lease_keys)
        if not keys:
            return
        words = [lease_id, *(str(change.delta) for change in changes), *(["lease"] * len(lease_keys))]
        try:
            await self._settle(keys=keys, args=[" ".join(words)])
        except (RedisError, OSError) as exc:
            raise _unreachable(exc) from exc

    async def start(self) -> None:
        """Load both scripts now, so that the first admission is a single EVALSHA too."""
        for script in (self._reserve, self._settle):
            script.sha = await self._client.script_load(script.script)

    async def close(self) -> None:
        await self._client.aclose()
