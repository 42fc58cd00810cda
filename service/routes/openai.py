"""OpenAI-compatible routes: chat completions, legacy completions, embeddings, models.

Each handler decodes, calls one ``ServingService`` method, and encodes; streaming bodies come from
``service.streams``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Request, Response, get, post
from litestar.response import Stream

from endpoints.router import PIN_HEADERS
from meterway.errors import InvalidRequest
from meterway.roles import CATALOG, INVOKE
from service.auth import Principal
from service.guard import needs
from service.http.openapi import RATE_HEADERS
from service.jobs import new_request_id
from service.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Model,
    ModelList,
)
from service.responses import chat_completion, completion, embedding_list
from service.routing import Via
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


def paths(route: str) -> list[str]:
    """A route of the OpenAI protocol at ``/v1`` (the serverless endpoint) and at every endpoint's
    ``scoring_uri`` (``/endpoints/{name}/v1``)."""
    return [f"/v1{route}", f"/endpoints/{{endpoint:str}}/v1{route}"]


async def provide_via(request: Request[Any, Any, Any]) -> Via:
    """The endpoint a request addressed (from its path) and the deployment it pins (from its headers)."""
    pins = {name: request.headers[name] for name in PIN_HEADERS if request.headers.get(name)}
    if len(set(pins.values())) > 1:
        raise InvalidRequest(f"{' and '.join(pins)} name different deployments; send one", param=PIN_HEADERS[1])
    header, pin = next(iter(pins.items()), (PIN_HEADERS[0], None))
    return Via(request.path_params.get("endpoint"), pin.strip() if pin else None, header)


@post(paths("/chat/completions"), summary="Create a chat completion", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS, opt=needs(INVOKE))
async def create_chat_completion(data: ChatCompletionRequest, principal: Principal, serving: ServingService,
                                 via: Via) -> Response[Any]:
    """OpenAI's chat completions, streamed (SSE) or not; ``usage`` is the engine's own count."""
    _bind(principal, data.model)
    request_id = new_request_id("chatcmpl")
    generation = await serving.chat(principal, data, request_id, via)
    created, model = int(time.time()), generation.plan.model.id
    if data.stream:
        return _sse(generation, chat_chunks(generation.plan, generation.choice_count, model, created))
    outcome = await generation.collect()
    return Response(chat_completion(request_id, generation, outcome), headers=generation.headers)


@post(paths("/completions"), summary="Create a completion (legacy)", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS, opt=needs(INVOKE))
async def create_completion(data: CompletionRequest, principal: Principal, serving: ServingService,
                            via: Via) -> Response[Any]:
    """OpenAI's legacy prompt completions; a list of prompts gives ``n`` choices per prompt."""
    _bind(principal, data.model)
    request_id = new_request_id("cmpl")
    generation = await serving.completion(principal, data, request_id, via)
    created, model = int(time.time()), generation.plan.model.id
    if data.stream:
        return _sse(generation, completion_chunks(generation.plan, model, created))
    outcome = await generation.collect()
    return Response(completion(request_id, generation, outcome), headers=generation.headers)


@post(paths("/embeddings"), summary="Create embeddings", tags=["OpenAI"], status_code=200,
      response_headers=RATE_HEADERS, opt=needs(INVOKE))
async def create_embeddings(data: EmbeddingRequest, principal: Principal, serving: ServingService,
                            via: Via) -> Response[Any]:
    """OpenAI's embeddings: a string or a list of inputs; billed per input token."""
    _bind(principal, data.model)
    plan, vectors, headers = await serving.embeddings(principal, data, new_request_id("emb"), via)
    return Response(embedding_list(plan, vectors, data.encoding_format), headers=headers)


def _model(spec_state_prices: tuple[Any, str, Any]) -> Model:
    spec, state, prices = spec_state_prices
    return Model(id=spec.id, created=spec.created, owned_by=spec.tenant or spec.owned_by, state=state,
                 task=spec.task, context_length=spec.context_length,
                 input_price_per_million=str(prices.input_per_million),
                 output_price_per_million=str(prices.output_per_million))


@get(paths("/models"), summary="List models", tags=["OpenAI"], opt=needs(CATALOG))
async def list_models(principal: Principal, serving: ServingService, via: Via) -> ModelList:
    """The catalog as this key sees it (at an endpoint: its deployments' models), with each model's live state
    (cold / loading / ready)."""
    return ModelList(data=[_model(item) for item in await serving.models(principal, via)])


@get(paths("/models/{model_id:path}"), summary="Retrieve a model", tags=["OpenAI"], opt=needs(CATALOG))
async def retrieve_model(model_id: str, principal: Principal, serving: ServingService, via: Via) -> Model:
    """One model, or 404 if it does not exist or is not visible to this key."""
    return _model(await serving.model(principal, model_id.lstrip("/"), via))


openai_handlers = [create_chat_completion, create_completion, create_embeddings, list_models, retrieve_model]
