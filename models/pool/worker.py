"""One worker process per loaded model: ``python -m models.pool.worker [--loader module:function]``.

The gateway writes frames (``models.pool.protocol``) to this process's stdin and reads its stdout. The first
frame is ``Load``; the worker loads the model with the runtime's loader, answers ``Loaded`` or
``LoadFailed``, then serves until ``Shutdown`` or end of input (the gateway went away), and exits so that
the model's memory really returns to the system. This is the only pool module that imports the runtime
(and through it torch).
"""

from __future__ import annotations

import argparse
import importlib
import os
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

import psutil
import structlog

from meterway.logs import configure_logging
from models.pool import protocol as wire
from models.runtime.api import GenerationRequest, LoadSpec, TokenDelta

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger("meterway.pool.worker")


class FrameWriter:
    """Sends frames from any thread (the engine's decode loop emits deltas) through one writer thread."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._codec = wire.FrameCodec()
        self._queue: queue.SimpleQueue[wire.Message | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="frame-writer", daemon=True)
        self._thread.start()

    def send(self, message: wire.Message) -> None:
        """Queue a frame; thread-safe and never blocks the caller."""
        self._queue.put(message)

    def close(self) -> None:
        """Flush what is queued and stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            # Write everything already queued before one flush: fewer syscalls under a big batch.
            while message is not None:
                self._out.write(self._codec.encode(message))
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._out.flush()
            if message is None:
                return


def read_frame(source: BinaryIO, codec: wire.FrameCodec) -> wire.Message | None:
    """The next frame from ``source``, or None at end of input."""
    header = source.read(wire.HEADER.size)
    if len(header) < wire.HEADER.size:
        return None
    length = wire.frame_length(header)
    payload = source.read(length)
    if len(payload) < length:
        return None
    return codec.decode(payload)


class WorkerServer:
    """Serves one loaded model: turns frames into engine calls and engine output into frames."""

    def __init__(self, model: Any, writer: FrameWriter) -> None:
        self._model = model
        self._writer = writer
        self._handlers: dict[type, Callable[[Any], None]] = {
            GenerationRequest: self._generate,
            wire.Cancel: self._cancel,
            wire.Embed: self._embed,
            wire.AttachAdapter: self._attach,
            wire.DetachAdapter: self._detach,
            wire.StatsRequest: self._stats,
        }

    def serve(self, source: BinaryIO) -> None:
        """Handle frames until ``Shutdown`` or end of input."""
        codec = wire.FrameCodec()
        while (message := read_frame(source, codec)) is not None and not isinstance(message, wire.Shutdown):
            handler = self._handlers.get(type(message))
            if handler is None:
                log.warning("unexpected frame", kind=type(message).__name__)
                continue
            handler(message)

    def _generate(self, request: GenerationRequest) -> None:
        try:
            self._model.submit(request, self._emit)
        except Exception as exc:  # a refused submit must still end its stream, or the caller waits forever
            log.exception("submit failed", request_id=request.request_id)
            self._writer.send(TokenDelta(request.request_id, "", len(request.prompt_ids), 0, "error", str(exc)))

    def _emit(self, delta: TokenDelta) -> None:
        self._writer.send(delta)

    def _cancel(self, message: wire.Cancel) -> None:
        self._model.cancel(message.request_id)

    def _embed(self, message: wire.Embed) -> None:
        try:
            result = self._model.embed(message.inputs)
        except Exception as exc:
            log.exception("embed failed", request_id=message.request_id)
            self._writer.send(wire.Failed(message.request_id, str(exc)))
            return
        self._writer.send(wire.Embedded(message.request_id, result.vectors, result.prompt_tokens))

    def _attach(self, message: wire.AttachAdapter) -> None:
        try:
            seconds = self._model.attach_adapter(message.name, message.path)
        except Exception as exc:
            log.exception("adapter attach failed", adapter=message.name)
            self._writer.send(wire.Failed(message.request_id, str(exc)))
            return
        self._writer.send(wire.AdapterAttached(message.request_id, message.name, float(seconds)))

    def _detach(self, message: wire.DetachAdapter) -> None:
        try:
            self._model.detach_adapter(message.name)
        except Exception as exc:
            log.exception("adapter detach failed", adapter=message.name)
            self._writer.send(wire.Failed(message.request_id, str(exc)))
            return
        self._writer.send(wire.AdapterDetached(message.request_id, message.name))

    def _stats(self, message: wire.StatsRequest) -> None:
        stats = getattr(self._model, "stats", None)
        values = {k: float(v) for k, v in stats().items()} if stats else {}
        self._writer.send(wire.Stats(message.request_id, values, psutil.Process().memory_info().rss))


def claim_stdout() -> BinaryIO:
    """Keep the real stdout for frames and point fd 1 at stderr, so a stray print cannot corrupt a frame."""
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(frames_fd, "wb", buffering=1 << 16)


def resolve_loader(loader_path: str) -> Callable[[LoadSpec], Any]:
    """Import the loader (``module:function``): the runtime's heavy imports happen here, before any frame."""
    module_name, _, function_name = loader_path.partition(":")
    module = importlib.import_module(module_name)
    loader: Callable[[LoadSpec], Any] = getattr(module, function_name or "load")
    prewarm = getattr(module, "prewarm", None)
    if callable(prewarm):
        prewarm()  # a standby worker pays the model code's imports before it is needed
    return loader


def load_model(loader: Callable[[LoadSpec], Any], message: LoadSpec) -> Any:
    """Load the model ``message`` names."""
    return loader(message)


def main(argv: list[str] | None = None) -> int:
    """Load the model named by the first frame, serve it, exit when the gateway says so or goes away."""
    parser = argparse.ArgumentParser(prog="python -m models.pool.worker")
    parser.add_argument("--loader", default="models.runtime:load", help="module:function returning the model")
    args = parser.parse_args(argv)
    writer = FrameWriter(claim_stdout())
    configure_logging(os.environ.get("METERWAY_LOG_LEVEL", "info"), sys.stderr, process="worker")
    # Import first, then wait: a standby worker is warm by the time the pool hands it a model to load.
    loader = resolve_loader(args.loader)
    source = sys.stdin.buffer
    first = read_frame(source, wire.FrameCodec())
    if first is None:  # a standby the pool no longer needs
        writer.close()
        return 0
    if not isinstance(first, LoadSpec):
        log.error("first frame was not Load", kind=type(first).__name__)
        writer.close()
        return 2
    started = time.perf_counter()
    try:
        model = load_model(loader, first)
    except Exception as exc:
        log.exception("load failed", model=first.model_id)
        writer.send(wire.LoadFailed(f"{type(exc).__name__}: {exc}"))
        writer.close()
        return 1
    seconds = time.perf_counter() - started
    writer.send(wire.Loaded(seconds, psutil.Process().memory_info().rss))
    log.info("model loaded", model=first.model_id, seconds=round(seconds, 3), pid=os.getpid())
    try:
        WorkerServer(model, writer).serve(source)
    finally:
        model.close()
        writer.close()
    return 0


def run() -> None:
    """Entry point: exit without the interpreter's teardown once the model is closed and frames flushed.

    Tearing down torch and transformers module by module takes seconds and frees nothing the OS would not
    reclaim at once; an unload (and an eviction waiting on it) should not wait for it.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
