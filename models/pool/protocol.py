"""The wire protocol between the gateway and a worker process: length-prefixed msgspec msgpack frames.

Each frame is a 4-byte big-endian length followed by one msgpack-encoded ``Message``. The gateway writes to
the worker's stdin and reads its stdout; the worker's stderr carries its logs. Requests that expect one answer
(``Embed``, ``AttachAdapter``, ``DetachAdapter``,
``StatsRequest``) carry a ``request_id`` that the answer echoes.

Gateway → worker: ``LoadSpec`` (first frame, once), ``GenerationRequest``, ``Cancel``, ``Embed``, ``AttachAdapter``,
``DetachAdapter``, ``StatsRequest``, ``Shutdown``. Worker → gateway: ``Loaded`` / ``LoadFailed`` (once),
``TokenDelta``, ``Embedded``, ``AdapterAttached``, ``AdapterDetached``, ``Stats``, ``Failed``.
"""

from __future__ import annotations

import struct

import msgspec

from models.runtime.api import GenerationRequest, LoadSpec, TokenDelta

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # an embedding batch is the largest frame; anything past this is corruption


class Loaded(msgspec.Struct, tag="loaded"):
    """The model is ready; ``rss_bytes`` is the worker's resident memory after loading."""

    seconds: float
    rss_bytes: int


class LoadFailed(msgspec.Struct, tag="load_failed"):
    error: str


class Cancel(msgspec.Struct, tag="cancel"):
    request_id: str


class Embed(msgspec.Struct, tag="embed"):
    request_id: str
    inputs: list[list[int]]


class Embedded(msgspec.Struct, tag="embedded"):
    request_id: str
    vectors: list[list[float]]
    prompt_tokens: int


class AttachAdapter(msgspec.Struct, tag="attach_adapter"):
    """Attach a LoRA adapter under ``name`` (the fine-tune's model id)."""

    request_id: str
    name: str
    path: str


class AdapterAttached(msgspec.Struct, tag="adapter_attached"):
    request_id: str
    name: str
    seconds: float


class DetachAdapter(msgspec.Struct, tag="detach_adapter"):
    """Drop an adapter (the pool frees a slot before attaching another)."""

    request_id: str
    name: str


class AdapterDetached(msgspec.Struct, tag="adapter_detached"):
    request_id: str
    name: str


class StatsRequest(msgspec.Struct, tag="stats_request"):
    request_id: str


class Stats(msgspec.Struct, tag="stats"):
    """The engine's own counters (``TextGenerator.stats()``) and the worker's resident memory."""

    request_id: str
    values: dict[str, float]
    rss_bytes: int


class Failed(msgspec.Struct, tag="failed"):
    """A request that expected one answer failed inside the worker."""

    request_id: str
    error: str


class Shutdown(msgspec.Struct, tag="shutdown"):
    """Release the model and exit."""


Message = (LoadSpec | Loaded | LoadFailed | GenerationRequest | TokenDelta | Cancel | Embed | Embedded | AttachAdapter
           | AdapterAttached | DetachAdapter | AdapterDetached | StatsRequest | Stats | Failed | Shutdown)


class FrameCodec:
    """Encodes and decodes frames; one per side of a pipe (msgspec coders are reusable, not shared)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Message)

    def encode(self, message: Message) -> bytes:
        """The frame for ``message``: length prefix and payload."""
        payload = self._encoder.encode(message)
        return HEADER.pack(len(payload)) + payload

    def decode(self, payload: bytes) -> Message:
        """Decode one frame's payload (without its length prefix)."""
        return self._decoder.decode(payload)


def frame_length(header: bytes) -> int:
    """The payload length announced by a 4-byte header; refuses absurd sizes (a corrupted stream)."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return int(length)
