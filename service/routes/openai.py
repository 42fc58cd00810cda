"""OpenAI-compatible routes: chat completions, legacy completions, embeddings, models.

Each handler decodes, calls one ``ServingService`` method, and encodes; streaming bodies come from
``service.streams``.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Response, get, post
from litestar.response import Stream

from service.auth import Principal
from service.http.openapi import RATE_HEADERS
from service.jobs import new_request_id
from service.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    Model,
    ModelList,
)
from service.responses import chat_choice, completion_choice
from service.serving import ServingService
from service.streams import chat_chunks, completion_chunks

if TYPE_CHECKING:
    from service.lifecycle import Generation, StreamEncoding

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _sse(generation: Generation, encoding: StreamEncoding) -> Response[Any]:
    """A streamed answer: the generation's SSE body with its headers."""
    return Stream(generation.stream(encoding), media_type="text/event-stream",
                  headers={**generation.headers, **SSE_HEADERS})


def _bind(principal: Principal, model: str) -> None:
    structlog.contextvars.bind_contextvars(tenant=principal.billing_tenant, model=model)


@post("/v1/chat/completions", summary="Create a chat completion", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS)
async def create_chat_completion(data: ChatCompletionRequest, principal: Principal,
                                 serving: ServingService) -> Response[Any]:
    """OpenAI's chat completions, streamed (SSE) or not; ``usage`` is the engine's own count."""
    _bind(principal, data.model)
    request_id = new_request_id("chatcmpl")
    generation = await serving.chat(principal, data, request_id)
    created = int(time.time())
    if data.stream:
        return _sse(generation, chat_chunks(generation.plan, generation.choice_count, data.model, created))
    outcome = await generation.collect()
    return Response(ChatCompletion(id=request_id, choices=[chat_choice(c, generation.plan) for c in outcome.choices],
                                   created=created, model=data.model, system_fingerprint=generation.fingerprint,
                                   usage=outcome.usage), headers=generation.headers)


@post("/v1/completions", summary="Create a completion (legacy)", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS)
async def create_completion(data: CompletionRequest, principal: Principal,
                            serving: ServingService) -> Response[Any]:
    """OpenAI's legacy prompt completions; a list of prompts gives ``n`` choices per prompt."""
    _bind(principal, data.model)
    request_id = new_request_id("cmpl")
    generation = await serving.completion(principal, data, request_id)
    created = int(time.time())
    if data.stream:
        return _sse(generation, completion_chunks(generation.plan, data.model, created))
    outcome = await generation.collect()
    choices = [completion_choice(c, generation.plan) for c in outcome.choices]
    return Response(Completion(id=request_id, choices=choices, created=created, model=data.model,
                               system_fingerprint=generation.fingerprint, usage=outcome.usage),
                    headers=generation.headers)


@post("/v1/embeddings", summary="Create embeddings", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS)
async def create_embeddings(data: EmbeddingRequest, principal: Principal, serving: ServingService) -> Response[Any]:
    """OpenAI's embeddings: a string or a list of inputs; billed per input token."""
    _bind(principal, data.model)
    plan, vectors, headers = await serving.embeddings(principal, data, new_request_id("emb"))
    items = [Embedding(embedding=_encode_vector(v, data.encoding_format), index=i) for i, v in enumerate(vectors)]
    usage = EmbeddingUsage(prompt_tokens=plan.prompt_tokens, total_tokens=plan.prompt_tokens)
    return Response(EmbeddingList(data=items, model=data.model, usage=usage), headers=headers)


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def _model(spec_state_prices: tuple[Any, str, Any]) -> Model:
    spec, state, prices = spec_state_prices
    return Model(id=spec.id, created=spec.created, owned_by=spec.tenant or spec.owned_by, state=state,
                 task=spec.task, context_length=spec.context_length,
                 input_price_per_million=str(prices.input_per_million),
                 output_price_per_million=str(prices.output_per_million))


@get("/v1/models", summary="List models", tags=["OpenAI"])
async def list_models(principal: Principal, serving: ServingService) -> ModelList:
    """The catalog as this key sees it, with each model's live state (cold / loading / ready)."""
    return ModelList(data=[_model(item) for item in await serving.models(principal)])


@get("/v1/models/{model_id:path}", summary="Retrieve a model", tags=["OpenAI"])
async def retrieve_model(model_id: str, principal: Principal, serving: ServingService) -> Model:
    """One model, or 404 if it does not exist or is not visible to this key."""
    return _model(await serving.model(principal, model_id.lstrip("/")))


openai_handlers = [create_chat_completion, create_completion, create_embeddings, list_models, retrieve_model]
