"""The gateway's side of one worker process: spawn it, talk frames over its pipes, notice when it dies.

asyncio-native: one reader task per worker dispatches every frame from the worker's stdout to the stream or
the waiting call it belongs to. When the process exits — asked to or killed — every stream still open gets
a final ``error`` delta carrying the tokens it had delivered, every pending call fails with
``WorkerCrashed``, and the pool is told through ``on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil
import structlog

from meterway.errors import InternalFailure, InvalidRequest, WorkerCrashed
from models.pool import protocol as wire
from models.runtime.api import EmbeddingResult, EmitDelta, GenerationRequest, LoadSpec, TokenDelta

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = structlog.get_logger("meterway.pool")


@dataclass
class _OpenStream:
    sink: EmitDelta
    prompt_tokens: int
    completion_tokens: int = 0


class WorkerHost:
    """A model served by a ``python -m models.pool.worker`` child process."""

    def __init__(self, load: LoadSpec, *, spawn: Callable[[], Awaitable[asyncio.subprocess.Process]],
                 on_exit: Callable[[Any], None], close_timeout_s: float = 10.0, call_timeout_s: float = 120.0,
                 load_timeout_s: float = 600.0, on_log: Callable[[str], None] | None = None) -> None:
        self._load = load
        self._on_log = on_log
        self._spawn = spawn
        self._on_exit = on_exit
        self._close_timeout_s = close_timeout_s
        self._call_timeout_s = call_timeout_s
        self._load_timeout_s = load_timeout_s
        self._hung: str | None = None  # why the host stopped an unresponsive worker
        self._codec = wire.FrameCodec()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._logs: asyncio.Task[None] | None = None
        self._loaded: asyncio.Future[wire.Loaded] | None = None
        self._streams: dict[str, _OpenStream] = {}
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._exited = False
        self._closing = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            TokenDelta: self._deliver,
            wire.Loaded: self._settle_load,
            wire.LoadFailed: self._settle_load,
            wire.Failed: lambda m: self._settle(m.request_id, error=m.error),
            wire.Embedded: lambda m: self._settle(m.request_id, result=m),
            wire.AdapterAttached: lambda m: self._settle(m.request_id, result=m),
            wire.AdapterDetached: lambda m: self._settle(m.request_id, result=m),
            wire.Stats: lambda m: self._settle(m.request_id, result=m),
        }

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def load(self) -> float:
        """Start the worker and have it load the model; returns the model's own load seconds."""
        self._loaded = asyncio.get_running_loop().create_future()
        self._process = await self._spawn()
        self._reader = asyncio.create_task(self._read_loop(), name=f"worker-reader-{self._load.model_id}")
        if self._process.stderr is not None:
            self._logs = asyncio.create_task(self._log_loop(self._process.stderr), name="worker-logs")
        self._send(self._load)
        loaded = await self._answer(self._loaded, self._load_timeout_s, "load")
        return loaded.seconds

    def submit(self, request: GenerationRequest, sink: EmitDelta) -> None:
        """Send a sequence to the worker; its deltas go to ``sink``."""
        if request.request_id in self._streams:
            raise InvalidRequest(f"request id {request.request_id!r} is already running")
        prompt_tokens = len(request.prompt_ids)
        if self._exited:
            sink(TokenDelta(request.request_id, "", prompt_tokens, 0, "error", self._exit_message()))
            return
        self._streams[request.request_id] = _OpenStream(sink, prompt_tokens)
        self._send(request)

    def cancel(self, request_id: str) -> None:
        """Ask the worker to stop a sequence (its ``cancelled`` delta follows)."""
        if request_id in self._streams and not self._exited:
            # A worker dying right now ends the stream anyway (with its error delta): nothing to cancel.
            with contextlib.suppress(WorkerCrashed, ConnectionError, RuntimeError):
                self._send(wire.Cancel(request_id))

    async def embed(self, request_id: str, inputs: list[list[int]]) -> EmbeddingResult:
        answer: wire.Embedded = await self._call(wire.Embed(request_id, inputs))
        return EmbeddingResult(vectors=answer.vectors, prompt_tokens=answer.prompt_tokens)

    async def attach_adapter(self, name: str, path: str) -> float:
        answer: wire.AdapterAttached = await self._call(wire.AttachAdapter(self._next_id(), name, path))
        return answer.seconds

    async def detach_adapter(self, name: str) -> None:
        await self._call(wire.DetachAdapter(self._next_id(), name))

    async def stats(self) -> wire.Stats:
        result: wire.Stats = await self._call(wire.StatsRequest(self._next_id()))
        return result

    def rss_bytes(self) -> int:
        """The worker's resident memory, read by the gateway (no round trip to the worker)."""
        if self._process is None or self._exited:
            return 0
        try:
            return int(psutil.Process(self._process.pid).memory_info().rss)
        except psutil.Error:
            return 0

    async def close(self) -> None:
        """Ask the worker to exit, kill it if it does not within the timeout, wait for the reader."""
        self._closing = True
        process = self._process
        if process is None:
            return
        if not self._exited and process.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self._send(wire.Shutdown())
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), self._close_timeout_s)
        except TimeoutError:
            log.warning("worker did not exit, killing it", model=self._load.model_id, pid=process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader
        if self._logs is not None:
            await self._logs

    def _send(self, message: wire.Message) -> None:
        assert self._process is not None and self._process.stdin is not None
        if self._process.stdin.is_closing():
            raise WorkerCrashed(self._exit_message())
        self._process.stdin.write(self._codec.encode(message))

    async def _call(self, message: Any) -> Any:
        if self._exited:
            raise WorkerCrashed(self._exit_message())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[message.request_id] = future
        try:
            self._send(message)
            return await self._answer(future, self._call_timeout_s, type(message).__name__)
        finally:
            self._calls.pop(message.request_id, None)

    async def _answer(self, future: asyncio.Future[Any], timeout_s: float, what: str) -> Any:
        """The worker's answer to ``what``; a worker silent past ``timeout_s`` is hung: kill it and fail."""
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            self._hung = f"did not answer {what} within {timeout_s:g} s and was stopped"
            log.error("worker hung, killing it", model=self._load.model_id, pid=self.pid, call=what)
            assert self._process is not None
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            raise WorkerCrashed(self._exit_message()) from None

    def _next_id(self) -> str:
        return f"call-{next(self._ids)}"

    async def _read_loop(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        try:
            while True:
                header = await stdout.readexactly(wire.HEADER.size)
                payload = await stdout.readexactly(wire.frame_length(header))
                self._dispatch(self._codec.decode(payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker closed its stdout: it is exiting
        except Exception:
            log.exception("bad frame from worker; stopping it", model=self._load.model_id)
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()
        self._exited = True
        self._fail_everything()
        self._on_exit(self)

    async def _log_loop(self, stderr: asyncio.StreamReader) -> None:
        """Pass the worker's log lines on to the gateway's stderr, and a copy to ``on_log``."""
        while True:
            try:
                line = await stderr.readline()
            except ValueError:  # a line past the reader's limit: it is dropped, the next one is read
                continue
            except ConnectionError:
                return
            if not line:
                return
            text = line.decode(errors="replace")
            sys.stderr.write(text)
            if self._on_log is not None:
                self._on_log(text)

    def _dispatch(self, message: wire.Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)

    def _deliver(self, message: TokenDelta) -> None:
        stream = self._streams.get(message.request_id)
        if stream is None:
            return  # a late delta for a stream already ended
        stream.completion_tokens = message.completion_tokens
        if message.finish_reason is not None:
            del self._streams[message.request_id]
        stream.sink(message)

    def _settle_load(self, message: wire.Loaded | wire.LoadFailed) -> None:
        if self._loaded is None or self._loaded.done():
            return
        if isinstance(message, wire.Loaded):
            self._loaded.set_result(message)
        else:
            error = f"loading {self._load.model_id} failed: {message.error}"
            self._loaded.set_exception(InternalFailure(error, code="model_load_failed"))

    def _settle(self, request_id: str, *, result: Any = None, error: str | None = None) -> None:
        future = self._calls.get(request_id)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(InternalFailure(error))
        else:
            future.set_result(result)

    def _fail_everything(self) -> None:
        """The worker is gone: end every stream with what it delivered, fail every call and the load."""
        message = self._exit_message()
        streams, self._streams = self._streams, {}
        for request_id, stream in streams.items():
            stream.sink(TokenDelta(request_id, "", stream.prompt_tokens, stream.completion_tokens, "error",
                                   message))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(WorkerCrashed(message))
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_exception(InternalFailure(f"loading {self._load.model_id} failed: {message}",
                                                       code="model_load_failed"))

    def _exit_message(self) -> str:
        code = self._process.returncode if self._process else None
        reason = self._hung or ("was stopped" if self._closing else "crashed")
        status = "" if code is None else f" (exit code {code})"
        return f"the worker serving {self._load.model_id} {reason}{status}"
