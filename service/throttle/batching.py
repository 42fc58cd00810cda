"""Send the script calls that concurrent requests make in the same event-loop turn as one pipeline.

Each call stays its own EVALSHA (its own atomic admission), but a busy gateway writes them to Redis together
and reads the replies together: one network round trip, and one pair of syscalls, for all of them. A lone
call goes out alone, exactly as it would without batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

Orphan = Callable[[Any], None]
Call = tuple[list[str], list[str], "asyncio.Future[Any]", Orphan | None]


class ScriptBatcher:
    """Calls one registered script; calls made in the same loop turn share a pipeline."""

    def __init__(self, client: Redis, script: AsyncScript) -> None:
        self._client = client
        self._script = script
        self._queued: list[Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, keys: list[str], args: list[str], orphan: Orphan | None = None) -> Any:
        """The script's reply for ``keys`` and ``args``; raises what Redis raised for this call.

        If the caller is cancelled after the call was queued, the call still runs, and ``orphan`` receives
        its reply (so that what it reserved can be given back).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((keys, args, future, orphan))
        if len(self._queued) == 1:
            # The task starts on the loop's next turn and takes every call queued until then.
            task = asyncio.ensure_future(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return await future

    async def drain(self) -> None:
        """Wait for the batches in flight (on shutdown)."""
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send(self) -> None:
        batch, self._queued = self._queued, []
        await self._run(batch)

    async def _run(self, batch: list[Call]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _future, _orphan = batch[0]
                replies: list[Any] = [await self._script(keys=keys, args=args)]
            else:
                replies = await self._pipeline(batch)
        except Exception as exc:  # every caller gets the failure; none is left waiting
            replies = [exc] * len(batch)
        for (_keys, _args, future, orphan), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled meanwhile
                if orphan is not None and not isinstance(reply, Exception):
                    orphan(reply)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[Call]) -> list[Any]:
        replies = await self._execute(batch)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # Redis restarted or the script was never loaded: load it, then send only those calls again.
            self._script.sha = await self._client.script_load(self._script.script)
            for i, reply in zip(missing, await self._execute([batch[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _execute(self, batch: list[Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _future, _orphan in batch:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
