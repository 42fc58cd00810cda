"""OpenAI wire types, fields in the order of OpenAI's API reference. meterway extensions are marked.

Requests decode into these structs (unknown fields are ignored, as OpenAI does for fields it does not use);
``service.jobs`` validates them into generation jobs, the only thing the pool accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Meta(ge=1)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]


class ContentPart(Struct, kw_only=True):
    type: str
    text: str | None = None


class ChatMessage(Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(Struct, kw_only=True):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    model: str
    frequency_penalty: Penalty | None = None
    logprobs: bool | None = None
    max_completion_tokens: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n: PositiveInt = 1
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None


class CompletionRequest(Struct, kw_only=True):
    """``POST /v1/completions`` (legacy)."""

    model: str
    prompt: str | list[Any]  # a string, strings, token ids, or lists of token ids (checked in service.jobs)
    echo: bool = False
    frequency_penalty: Penalty | None = None
    logprobs: int | None = None
    max_tokens: PositiveInt | None = 16
    n: PositiveInt = 1
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None


class EmbeddingRequest(Struct, kw_only=True):
    """``POST /v1/embeddings``."""

    input: str | list[Any]  # a string, strings, token ids, or lists of token ids (checked in service.jobs)
    model: str
    dimensions: PositiveInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class PromptTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0  # served from the prefix cache; billed like any other prompt token


class Usage(Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class EmbeddingUsage(Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class AssistantMessage(Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None
    refusal: None = None


class ChatChoice(Struct, kw_only=True):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str


class ChatCompletion(Struct, kw_only=True):
    id: str
    choices: list[ChatChoice]
    created: int
    model: str
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    usage: Usage


class ChunkDelta(Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Struct, kw_only=True):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Struct, kw_only=True):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: str = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None


class CompletionChoice(Struct, kw_only=True):
    text: str
    index: int
    logprobs: None = None
    finish_reason: str | None


class Completion(Struct, kw_only=True):
    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    object: str = "text_completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None


class Embedding(Struct, kw_only=True):
    embedding: list[float] | str
    index: int
    object: str = "embedding"


class EmbeddingList(Struct, kw_only=True):
    data: list[Embedding]
    model: str
    object: str = "list"
    usage: EmbeddingUsage


class Model(Struct, kw_only=True):
    id: str
    created: int
    object: str = "model"
    owned_by: str
    # meterway extensions
    state: str = "cold"
    task: str = "chat"
    context_length: int = 0
    input_price_per_million: str = "0"
    output_price_per_million: str = "0"


class ModelList(Struct, kw_only=True):
    object: str = "list"
    data: list[Model]


def sse(payload: Any) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
