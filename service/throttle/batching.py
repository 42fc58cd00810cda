"""Auto-pipelining: script calls share one connection, and the calls that queue up while a batch is on the
wire go out together as the next batch.

Each call stays its own EVALSHA (its own atomic admission), but a busy gateway writes them to Redis together
and reads the replies together: one round trip, one pair of syscalls, and none of the connection pool's
per-command bookkeeping. A lone call goes out at once (on the loop's next turn). Redis runs commands one at a
time anyway, so one connection in flight costs no parallelism.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError, ResponseError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

Orphan = Callable[[Any], None]
Call = tuple[list[str], list[str], "asyncio.Future[Any]", Orphan | None]


class ScriptBatcher:
    """Calls one registered script over one dedicated connection, batching what queues up."""

    def __init__(self, client: Redis, script: AsyncScript) -> None:
        self._client = client
        self._script = script
        self._queued: list[Call] = []
        self._sender: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None

    async def call(self, keys: list[str], args: list[str], orphan: Orphan | None = None) -> Any:
        """The script's reply for ``keys`` and ``args``; raises what Redis raised for this call.

        If the caller is cancelled after the call was queued, the call still runs, and ``orphan`` receives
        its reply (so that what it reserved can be given back).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((keys, args, future, orphan))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._pump())
        return await future

    async def drain(self) -> None:
        """Wait until every queued call has been answered (on shutdown)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    async def close(self) -> None:
        """Give the dedicated connection back to the client's pool."""
        await self.drain()
        if self._connection is not None:
            await self._client.connection_pool.release(self._connection)
            self._connection = None

    async def _pump(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            await self._run(batch)

    async def _run(self, batch: list[Call]) -> None:
        try:
            replies = await self._execute(batch)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # Redis restarted or the script was never loaded: load it, then send only those calls again.
                self._script.sha = await self._client.script_load(self._script.script)
                for i, reply in zip(missing, await self._execute([batch[i] for i in missing]), strict=True):
                    replies[i] = reply
        except Exception as exc:  # every caller gets the failure; none is left waiting
            replies = [exc] * len(batch)
        for (_keys, _args, future, orphan), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled meanwhile
                if orphan is not None and not isinstance(reply, Exception):
                    orphan(reply)
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, batch: list[Call]) -> list[Any]:
        if self._connection is None:
            self._connection = await self._client.connection_pool.get_connection()
        connection = self._connection
        await connection.connect()  # again after an error had closed it
        commands: list[tuple[Any, ...]] = [("EVALSHA", self._script.sha, len(keys), *keys, *args)
                                           for keys, args, _f, _o in batch]
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _call in batch:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # this call's error; the connection stays in step
                replies.append(exc)
        return replies
