"""The OpenAI request fields beyond prompt and length: each honoured here or refused with a 400 naming it.

``Unsupported`` fields of ``service.protocol`` (declared so that they are never silently dropped) are
refused by name; penalties, ``logit_bias``, log probabilities and ``response_format`` become the engine's
``SamplingParams`` fields and grammar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterway.errors import InvalidRequest
from models.runtime.api import Grammar
from models.structured import validate

if TYPE_CHECKING:
    from models.tokenizer import PromptTokenizer
    from service.protocol import ChatCompletionRequest, CompletionRequest, ResponseFormat

# Declared fields meterway does not offer, with why (the 400's message).
_UNSUPPORTED = {
    "audio": "audio output is not supported by meterway models",
    "function_call": "the deprecated 'functions' API is not supported; use 'tools' and 'tool_choice'",
    "functions": "the deprecated 'functions' API is not supported; use 'tools'",
    "metadata": "meterway does not store completions, so there is nothing to attach 'metadata' to",
    "modalities": "meterway models produce text only; leave 'modalities' unset",
    "prediction": "predicted outputs are not supported",
    "prompt_cache_key": "the prefix cache is automatic; 'prompt_cache_key' is not supported",
    "reasoning_effort": "meterway models are not reasoning models",
    "safety_identifier": "'safety_identifier' is not supported; use 'user'",
    "verbosity": "meterway models have no verbosity setting",
    "web_search_options": "web search is not supported",
    "include_obfuscation": "stream obfuscation is not supported",
    "image_url": "only text content parts are supported",
    "input_audio": "only text content parts are supported",
    "file": "only text content parts are supported",
    "suffix": "insertion (a 'suffix' after the completion) is not supported by meterway models",
}


@dataclass(frozen=True)
class Options:
    """The engine-side settings a request asks for beyond length and stops."""

    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int = -1
    grammar: Grammar | None = None


def refuse_unsupported(obj: Any, prefix: str = "") -> None:
    """Refuse any ``Unsupported`` field of ``obj`` that is set (``prefix``: its path in the request)."""
    for name in getattr(obj, "__struct_fields__", ()):
        if name in _UNSUPPORTED and getattr(obj, name) is not None:
            raise InvalidRequest(f"'{prefix}{name}': {_UNSUPPORTED[name]}.", param=f"{prefix}{name}")


def refuse_chat_fields(request: ChatCompletionRequest) -> None:
    refuse_unsupported(request)
    if request.stream_options is not None:
        refuse_unsupported(request.stream_options, "stream_options.")
        if not request.stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    if request.store:
        raise InvalidRequest("meterway does not store completions; 'store' must be false.", param="store")
    for index, message in enumerate(request.messages):
        refuse_unsupported(message, f"messages[{index}].")
        for part_index, part in enumerate(message.content if isinstance(message.content, list) else []):
            refuse_unsupported(part, f"messages[{index}].content[{part_index}].")


def chat_options(request: ChatCompletionRequest, tokenizer: PromptTokenizer, grammar: Grammar | None) -> Options:
    """Penalties, bias, log probabilities and the output grammar of a chat request."""
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    logprobs = (request.top_logprobs or 0) if request.logprobs else -1
    formatted = response_grammar(request.response_format)
    if formatted is not None and grammar is not None:
        raise InvalidRequest("'response_format' cannot constrain the output while a tool call is forced or "
                             "offered; use one or the other.", param="response_format")
    return Options(request.presence_penalty or 0.0, request.frequency_penalty or 0.0,
                   logit_bias(request.logit_bias, tokenizer), logprobs, grammar or formatted)


def completion_options(request: CompletionRequest, tokenizer: PromptTokenizer) -> Options:
    if request.best_of is not None and request.best_of != request.n:
        raise InvalidRequest("'best_of' other than 'n' is not supported: every generated choice is returned.",
                             param="best_of")
    if request.stream_options is not None:
        refuse_unsupported(request.stream_options, "stream_options.")
    logprobs = -1 if request.logprobs is None else request.logprobs
    return Options(request.presence_penalty or 0.0, request.frequency_penalty or 0.0,
                   logit_bias(request.logit_bias, tokenizer), logprobs)


def logit_bias(bias: dict[str, float] | None, tokenizer: PromptTokenizer) -> tuple[tuple[int, float], ...]:
    """``{"token id": bias}`` as pairs, each id a token of this model's vocabulary."""
    pairs = []
    for key, value in (bias or {}).items():
        if not key.isdigit() or int(key) >= tokenizer.vocab_size:
            raise InvalidRequest(f"Invalid key in 'logit_bias': {key!r} is not a token id of this model "
                                 f"(0 to {tokenizer.vocab_size - 1}).", param="logit_bias")
        pairs.append((int(key), float(value)))
    return tuple(pairs)


def response_grammar(response_format: ResponseFormat | None) -> Grammar | None:
    """``json_object`` / ``json_schema`` as a grammar the engine enforces; ``text`` (or none) is free."""
    if response_format is None or response_format.type == "text":
        if response_format is not None and response_format.json_schema is not None:
            raise InvalidRequest("'json_schema' is only allowed with type 'json_schema'.",
                                 param="response_format.json_schema")
        return None
    if response_format.type == "json_object":
        return Grammar("json_object")
    spec = response_format.json_schema
    if spec is None or spec.schema is None:
        raise InvalidRequest("'response_format' of type 'json_schema' needs 'json_schema.schema'.",
                             param="response_format.json_schema")
    source = json.dumps(spec.schema)
    if error := validate("json_schema", source):
        raise InvalidRequest(f"Invalid schema for response_format '{spec.name}': {error}",
                             param="response_format.json_schema.schema")
    return Grammar("json_schema", source)
