"""``meterway-echo``: a deterministic model that runs inside the gateway process, without torch.

It exists for gateway benchmarks and limit tests: answers cost almost nothing, so what is measured is the
gateway. Step ``i`` emits one token, the prompt's token id ``prompt_ids[i % len(prompt_ids)]`` as text
``" <id>"``, yielding to the event loop between tokens like a real stream; it always emits exactly
``max_tokens`` tokens and finishes with ``length`` (stop strings are not applied). It does not embed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from meterway.errors import InvalidRequest
from models.pool import protocol as wire
from models.runtime.api import EmbeddingResult, EmitDelta, GenerationRequest, TokenDelta

if TYPE_CHECKING:
    from models.catalog import ModelSpec


class EchoHost:
    """The echo model as a pool host: one asyncio task per sequence."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()

    @property
    def pid(self) -> int | None:
        return None

    async def load(self) -> float:
        return 0.0

    def submit(self, request: GenerationRequest, sink: EmitDelta) -> None:
        """Start echoing; deltas go to ``sink``."""
        if request.request_id in self._tasks:
            raise InvalidRequest(f"request id {request.request_id!r} is already running")
        task = asyncio.get_running_loop().create_task(self._run(request, sink))
        self._tasks[request.request_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(request.request_id, None))

    def cancel(self, request_id: str) -> None:
        if request_id in self._tasks:
            self._cancelled.add(request_id)

    async def _run(self, request: GenerationRequest, sink: EmitDelta) -> None:
        ids = request.prompt_ids or (0,)
        prompt_tokens = len(request.prompt_ids)
        request_id = request.request_id
        limit = request.params.max_tokens
        for step in range(limit):
            await asyncio.sleep(0)
            if request_id in self._cancelled:
                self._cancelled.discard(request_id)
                sink(TokenDelta(request_id, "", prompt_tokens, step, "cancelled"))
                return
            finish = "length" if step + 1 == limit else None
            sink(TokenDelta(request_id, f" {ids[step % len(ids)]}", prompt_tokens, step + 1, finish))
        if limit <= 0:
            sink(TokenDelta(request_id, "", prompt_tokens, 0, "length"))

    async def embed(self, request_id: str, inputs: list[list[int]]) -> EmbeddingResult:
        raise InvalidRequest(f"{self._spec.id} is a chat model; it does not embed", param="model")

    async def attach_adapter(self, name: str, path: str) -> float:
        raise InvalidRequest(f"{self._spec.id} takes no adapters", param="model")

    async def detach_adapter(self, name: str) -> None:
        raise InvalidRequest(f"{self._spec.id} takes no adapters", param="model")

    async def stats(self) -> wire.Stats:
        return wire.Stats("echo", {"running": float(len(self._tasks))}, 0)

    def rss_bytes(self) -> int:
        return 0

    async def close(self) -> None:
        """Cancel what is still echoing (each stream gets its ``cancelled`` delta)."""
        for request_id in list(self._tasks):
            self._cancelled.add(request_id)
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
