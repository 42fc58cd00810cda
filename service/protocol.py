"""OpenAI wire types, fields in the order of OpenAI's API reference. meterway extensions are marked.

Requests decode into these structs and refuse any field they do not declare (``Unrecognized request argument
supplied``, as OpenAI does). Every declared field is honoured or refused by ``service.jobs`` with a 400 that
names it: a declared field is never dropped. ``service.jobs`` validates requests into generation jobs, the
only thing the pool accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from service.http.fields import Body

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Meta(ge=1)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]


TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
# Declared so that it is refused by name (``service.surface``), never dropped; documented as always null.
Unsupported = Annotated[Any, Meta(extra_json_schema={"type": "null", "description": "not supported by meterway: "
                                                                              "a 400 names it when it is set"})]


Request = Body  # a field a request does not declare is refused


class ContentPart(Request, kw_only=True):
    type: str
    text: str | None = None
    image_url: Unsupported = None
    input_audio: Unsupported = None
    file: Unsupported = None


class FunctionCall(Request, kw_only=True):
    name: str
    arguments: str


class ToolCall(Request, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Request, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool
    refusal: str | None = None  # assistant
    audio: Unsupported = None
    function_call: Unsupported = None


class StreamOptions(Request, kw_only=True):
    include_usage: bool = False
    include_obfuscation: Unsupported = None


class FunctionDefinition(Request, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Request, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Request, kw_only=True):
    name: str


class NamedToolChoice(Request, kw_only=True):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Request, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(Request, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(Request, kw_only=True):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    model: str = ""  # required at /v1; at an endpoint's scoring_uri the endpoint decides
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    max_completion_tokens: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n: PositiveInt = 1
    parallel_tool_calls: bool | None = None
    presence_penalty: Penalty | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = None
    service_tier: Literal["auto", "default"] | None = None  # one tier: both mean it
    stop: str | list[str] | None = None
    store: Literal[False] | None = None  # meterway does not store completions
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[Tool] | None = None
    top_logprobs: TopLogprobs | None = None
    top_p: TopP | None = None
    user: str | None = None
    audio: Unsupported = None
    function_call: Unsupported = None
    functions: Unsupported = None
    metadata: Unsupported = None
    modalities: Unsupported = None
    prediction: Unsupported = None
    prompt_cache_key: Unsupported = None
    reasoning_effort: Unsupported = None
    safety_identifier: Unsupported = None
    verbosity: Unsupported = None
    web_search_options: Unsupported = None


class CompletionRequest(Request, kw_only=True):
    """``POST /v1/completions`` (legacy)."""

    model: str = ""  # required at /v1; at an endpoint's scoring_uri the endpoint decides
    prompt: str | list[Any]  # a string, strings, token ids, or lists of token ids (checked in service.jobs)
    best_of: Literal[1] | None = None  # every generated choice is returned
    echo: Literal[False] = False  # not supported: the prompt is not echoed
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    max_tokens: PositiveInt | None = 16
    n: PositiveInt = 1
    presence_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: Unsupported = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None


class EmbeddingRequest(Request, kw_only=True):
    """``POST /v1/embeddings``."""

    input: str | list[Any]  # a string, strings, token ids, or lists of token ids (checked in service.jobs)
    model: str = ""  # required at /v1; at an endpoint's scoring_uri the endpoint decides
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


class TopLogprob(Struct, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Struct, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Struct, kw_only=True):
    content: list[TokenLogprob] | None
    refusal: None = None


class AssistantMessage(Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Struct, kw_only=True):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str


class ChatCompletion(Struct, kw_only=True):
    id: str
    choices: list[ChatChoice]
    created: int
    model: str
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    usage: Usage


class FunctionCallDelta(Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta | None = None


class ChunkDelta(Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(Struct, kw_only=True):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Struct, kw_only=True):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: str = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None


class CompletionLogprobs(Struct, kw_only=True):
    """The legacy shape: parallel lists, one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(Struct, kw_only=True):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
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
