"""Generation requests the gateway is still reading, so that a burst reaches the engine together.

The gateway reads, authenticates and plans requests one after another on its event loop, about 2 ms each
here. Of eight requests sent at the same instant the last reached the worker ~20 ms after the first, and
the engine, by then running a forward pass for the first ones, prefilled the rest in a second pass after it
(docs/performance.md). So a request that is ready to run first waits, at most ``hold_s``, for the generation
requests that were still being read at that moment; they then reach the pool within the same tick and the
engine prefills them in one pass. A lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

GENERATION_PATHS = ("/chat/completions", "/completions")
_current: ContextVar[asyncio.Future[None] | None] = ContextVar("meterway_arrival", default=None)


class Arrivals:
    """The generation requests being read now; ``ready`` holds a request briefly for the others."""

    def __init__(self, hold_s: float) -> None:
        self._hold_s = hold_s
        self._reading: set[asyncio.Future[None]] = set()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around one generation request: it counts as being read until ``ready`` or its end."""
        read: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reading.add(read)
        token = _current.set(read)
        try:
            yield
        finally:
            _current.reset(token)
            self._done(read)

    async def ready(self) -> None:
        """The current request is read: wait (at most ``hold_s``) for those still being read, then go."""
        read = _current.get()
        if read is None or read.done():
            return
        self._done(read)
        others = list(self._reading)
        if others and self._hold_s > 0:
            await asyncio.wait(others, timeout=self._hold_s)

    @property
    def reading(self) -> int:
        return len(self._reading)

    def _done(self, read: asyncio.Future[None]) -> None:
        self._reading.discard(read)
        if not read.done():
            read.set_result(None)


def is_generation(method: str, path: str) -> bool:
    return method == "POST" and path.endswith(GENERATION_PATHS)
