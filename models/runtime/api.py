"""The runtime's contract: what a worker process asks of a loaded model.

``LoadSpec``, ``GenerationRequest`` (with its ``SamplingParams``) and ``TokenDelta`` are msgspec Structs
that cross the process boundary as they are: the pool's wire protocol (``models/pool/protocol.py``) sends
these very types. The runtime implementations (transformers + accelerate, in worker processes only) live
beside this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec


class Grammar(msgspec.Struct, frozen=True):
    """A constraint on the output, enforced by a per-row token mask: ``json_schema`` (``source`` is the
    schema as JSON text) or ``json_object`` (any JSON object; ``source`` is empty)."""

    kind: str
    source: str = ""


class SamplingParams(msgspec.Struct, frozen=True):
    """How to pick tokens. ``temperature == 0`` is greedy; ``seed`` makes sampling reproducible.

    ``presence_penalty`` / ``frequency_penalty`` lower the logits of tokens already generated (once, and per
    occurrence); ``logit_bias`` adds to chosen token ids' logits; ``logprobs`` is -1 for none, else the
    number of alternatives reported beside each sampled token (0: only the token itself).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int = -1
    grammar: Grammar | None = None


class GenerationRequest(msgspec.Struct, frozen=True, tag="generate"):
    """One sequence to generate: already tokenized prompt, sampling, optional LoRA adapter name."""

    request_id: str
    prompt_ids: tuple[int, ...]
    params: SamplingParams
    adapter: str | None = None
    background: bool = False  # a batch line: online sequences are admitted ahead of it, and keep slots free


class TopLogprob(msgspec.Struct, frozen=True, array_like=True):
    """One alternative for a position: the token's text, its UTF-8 bytes and its log probability."""

    token: str
    bytes: tuple[int, ...]
    logprob: float


class TokenLogprob(msgspec.Struct, frozen=True, array_like=True):
    """A sampled token with its log probability (from the logits it was sampled from) and alternatives."""

    token: str
    bytes: tuple[int, ...]
    logprob: float
    top: tuple[TopLogprob, ...] = ()


class TokenDelta(msgspec.Struct, frozen=True, tag="delta"):
    """A streamed piece of one sequence.

    ``text`` is the newly decoded text (may be empty while a multi-byte character or a possible stop string
    is held back). ``completion_tokens`` is the running count of tokens generated so far, which is what
    billing uses. The last delta of a sequence has ``finish_reason`` set: ``stop``, ``length``,
    ``cancelled`` or ``error`` (then ``error`` holds the message).
    """

    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    error: str | None = None
    cached_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens since the previous delta, when asked for


EmitDelta = Callable[[TokenDelta], None]


class TextGenerator(Protocol):
    """A loaded causal LM that decodes many sequences together (continuous batching)."""

    def submit(self, request: GenerationRequest, emit: EmitDelta) -> None:
        """Queue a sequence; it joins the running batch at the next step. Thread-safe."""

    def cancel(self, request_id: str) -> None:
        """Stop a sequence at once; its final delta has ``finish_reason='cancelled'``. Thread-safe."""

    def attach_adapter(self, name: str, path: str) -> float:
        """Attach a LoRA adapter to the loaded base without copying it; returns seconds taken."""

    def detach_adapter(self, name: str) -> None:
        """Drop an adapter and its memory."""

    def close(self) -> None:
        """Stop the decode loop and release the model."""


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a batch of inputs, with the tokens counted by the model's tokenizer."""

    vectors: list[list[float]]
    prompt_tokens: int


class Embedder(Protocol):
    """A loaded sentence-embedding model."""

    def embed(self, inputs: list[list[int]]) -> EmbeddingResult:
        """Embed token-id inputs (mean pooling, L2-normalised)."""

    def close(self) -> None:
        """Release the model."""


class LoadSpec(msgspec.Struct, frozen=True, tag="load"):
    """What a worker must load: a store directory, its task, precision and device."""

    model_id: str
    path: str
    task: str  # "chat" or "embedding"
    dtype: str = "float32"
    device: str = "auto"
    max_batch: int = 16
    background_batch: int = 0  # rows background sequences may fill with no online traffic (0: max_batch)
    threads: int = 0
    extra: dict[str, str] = {}


DEFAULT_PREFIX_CACHE_MB = 64


def prefix_cache_bytes(extra: Mapping[str, str]) -> int:
    """The prefix cache a chat engine keeps, from its load options (``prefix_cache_mb``; 0 turns it off).

    Read here, without torch, so that the pool's memory estimate and the engine agree on the same figure.
    """
    return int(float(extra.get("prefix_cache_mb", DEFAULT_PREFIX_CACHE_MB)) * (1 << 20))
