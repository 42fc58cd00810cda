"""Auto-pipelining: script calls share one connection, and the calls made in one turn of the event loop go
out together in one write.

Each call stays its own EVALSHA (atomic on its own). redis-py opens the connection (address, TLS,
AUTH, SELECT, protocol handshake) and keeps owning it; once it is open, :class:`_Wire` takes the socket's
data callback: calls are packed by hiredis and written once per loop turn, and every reply is parsed by
hiredis and hands its result to the waiting caller right where the bytes arrive. No reader task, no
per-command pool bookkeeping and no wake-up beyond the socket's own: about half the CPU per call of
redis-py's own command path (docs/performance.md). Redis runs commands one at a time anyway, so one
connection in flight costs no parallelism.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

#: A script argument: hiredis writes numbers itself (floats as their shortest exact repr).
Arg = str | int | float
#: How long a call may wait for its reply when the connection does not say (redis-py's socket_timeout).
DEFAULT_TIMEOUT_S = 5.0


class Tally:
    """Requests written to Redis (one per command, pipeline or batch), shared by one store's connections."""

    def __init__(self) -> None:
        self.sent = 0


class _Pending:
    """A call on the wire: who waits for it, and what to send again if Redis lost the script."""

    __slots__ = ("args", "future", "keys", "retried")

    def __init__(self, future: asyncio.Future[Any], keys: list[str], args: list[Arg]) -> None:
        self.future = future
        self.keys = keys
        self.args = args
        self.retried = False


class ScriptBatcher:
    """Calls one registered script over one dedicated connection, batching what is called in one turn."""

    def __init__(self, client: Redis, script: AsyncScript, tally: Tally) -> None:
        self._client = client
        self._script = script
        self._tally = tally
        self._connection: AbstractConnection | None = None
        self._wire: _Wire | None = None
        self._opening = asyncio.Lock()

    async def call(self, keys: list[str], args: list[Arg]) -> Any:
        """The script's reply for ``keys`` and ``args``; raises what Redis raised for this call."""
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._open()
        return await wire.call(keys, args)

    def submit(self, keys: list[str], args: list[Arg]) -> asyncio.Future[Any]:
        """Queue one call now, without waiting: its reply's future (the connection is opened first if needed).

        Nobody's cancellation cancels the call; whoever submitted it reads the future when it is done.
        """
        wire = self._wire
        if wire is not None and not wire.closed:
            return wire.call(keys, args)
        return asyncio.ensure_future(self.call(keys, args))

    async def drain(self) -> None:
        """Wait until every queued call has been answered (on shutdown)."""
        if self._wire is not None:
            await self._wire.idle()

    async def close(self) -> None:
        """Close the dedicated connection and give it back to the client's pool."""
        await self.drain()
        if self._connection is not None:
            await self._connection.disconnect()
            await self._client.connection_pool.release(self._connection)
            self._connection = self._wire = None

    async def _open(self) -> _Wire:
        async with self._opening:
            if self._wire is not None and not self._wire.closed:
                return self._wire
            if self._connection is None:
                self._connection = await self._client.connection_pool.get_connection()
            connection = self._connection
            await connection.disconnect()  # a lost connection's leftovers; nothing when it was never open
            await connection.connect()
            writer: asyncio.StreamWriter = connection._writer  # type: ignore[assignment]  # open: redis-py's socket
            timeout = getattr(connection, "socket_timeout", None) or DEFAULT_TIMEOUT_S
            self._wire = _Wire(writer.transport, self._script, self._tally, timeout)
            return self._wire


def _pack(*parts: Any) -> bytes:
    """One command in Redis's wire format (hiredis's packer, in C)."""
    return hiredis.pack_command(parts)  # type: ignore[arg-type]  # its stub takes one-element tuples


class _Wire(asyncio.Protocol):
    """One open connection: writes pipelined calls once per loop turn and answers them as replies arrive.

    redis-py's own protocol object stays behind it and still hears when the connection closes, so that
    redis-py can close and reopen the connection as usual.
    """

    def __init__(self, transport: Any, script: AsyncScript, tally: Tally, timeout_s: float) -> None:
        self._transport = transport
        self._owner: asyncio.BaseProtocol = transport.get_protocol()
        self._script = script
        self._tally = tally
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: deque[_Pending] = deque()
        self._outgoing: list[bytes] = []
        self._idle: list[asyncio.Future[None]] = []
        self._answered = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        transport.set_protocol(self)

    def call(self, keys: list[str], args: list[Arg]) -> asyncio.Future[Any]:
        """Queue one EVALSHA; it goes out with the others of this loop turn."""
        pending = _Pending(self._loop.create_future(), keys, args)
        self._send(_pack("EVALSHA", self._script.sha, len(keys), *keys, *args), pending)
        return pending.future

    async def idle(self) -> None:
        """Return once no call waits for its reply."""
        if self._waiting:
            done: asyncio.Future[None] = self._loop.create_future()
            self._idle.append(done)
            await done

    def _send(self, packed: bytes, pending: _Pending) -> None:
        if not self._outgoing:
            self._loop.call_soon(self._write)
        self._outgoing.append(packed)
        self._waiting.append(pending)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout_s, self._check_progress, self._answered)

    def _write(self) -> None:
        if self._outgoing and not self.closed:
            self._tally.sent += 1
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.PushNotification):
                continue  # RESP3 out-of-band messages answer no call
            self._answered += 1
            self._answer(self._waiting.popleft(), reply)
        if not self._waiting:
            self._wake_idle()

    def _answer(self, pending: _Pending, reply: Any) -> None:
        if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT") and not pending.retried:
            # Redis restarted or flushed its scripts: send this call once more with the script's text,
            # which also loads it for the calls after it.
            pending.retried = True
            keys, args = pending.keys, pending.args
            self._send(_pack("EVAL", self._script.script, len(keys), *keys, *args), pending)
            return
        future = pending.future
        if future.done():  # the caller was cancelled meanwhile (the store gives back what it reserved)
            return
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def _check_progress(self, answered_before: int) -> None:
        self._watchdog = None
        if not self._waiting or self.closed:
            return
        if self._answered == answered_before:  # a whole timeout without a single reply: Redis is gone
            self._fail(RedisTimeoutError(f"no reply from Redis in {self._timeout_s} s"))
            self._transport.abort()
            return
        self._watchdog = self._loop.call_later(self._timeout_s, self._check_progress, self._answered)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._owner.connection_lost(exc)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        self._outgoing.clear()
        while self._waiting:
            pending = self._waiting.popleft()
            if not pending.future.done():
                pending.future.set_exception(error)
        self._wake_idle()

    def _wake_idle(self) -> None:
        for done in self._idle:
            if not done.done():
                done.set_result(None)
        self._idle.clear()
