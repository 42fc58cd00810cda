"""The serving service: resolves a model for the caller, validates, admits, and starts the run.

Routes call one method here; this module owns the order of the request path (see docs/architecture.md):
route → tokenize/validate → billing available → throttle admit → pool → meter → settle, then the mirrored
copy (if the router sampled one). Routing (``service.routing``) picks the model: ``/v1`` is the built-in
serverless endpoint over the catalog, a named endpoint one of its deployments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from meterway.errors import ModelNotFound
from service.inference import Admission, Run, UsageRecorder, usage_event
from service.jobs import EmbeddingPlan, Plan, plan_chat, plan_completion, plan_embeddings
from service.lifecycle import Finishes, Generation

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal

    from billing.money import Price
    from meterway.settings import Settings
    from models.catalog import ModelSpec
    from models.pool.api import ModelPool
    from models.tokenizer import PromptTokenizer, TokenizerCache
    from service.arrivals import Arrivals
    from service.auth import Principal
    from service.key_throttle import Capacity
    from service.mirroring import Mirrors
    from service.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
    from service.routing import Target, Via

log = structlog.get_logger(__name__)


class Router(Protocol):
    """Where a request runs (``service.routing.Routes``): the model, its endpoint and deployment, its mirror."""

    async def route(self, principal: Principal, model: str, via: Via) -> Target: ...

    async def visible(self, principal: Principal, via: Via) -> list[ModelSpec]: ...

    async def resolve(self, principal: Principal, model: str, via: Via) -> ModelSpec: ...


class AdmissionControl(Protocol):
    """Admission control: reserve before the model runs, settle after."""

    async def admit(self, principal: Principal, tokens: int, cost: Decimal,
                    capacity: Capacity | None = None) -> Admission: ...


class PriceQuotes(Protocol):
    """The prices in force for a model at a moment (the price book)."""

    async def quote(self, model: ModelSpec, at: datetime, *, tier: str = "online") -> Price: ...


class BillingGate(Protocol):
    """Refuses to serve when usage could not be recorded."""

    async def ensure_available(self) -> None: ...


@dataclass(frozen=True)
class Gates:
    """What stands between a planned request and the pool: billing's availability, throttle, arrivals."""

    throttle: AdmissionControl
    meter: UsageRecorder
    billing: BillingGate
    arrivals: Arrivals
    finishes: Finishes
    mirrors: Mirrors


class ServingService:
    """Runs chat, completion and embedding requests for a principal."""

    def __init__(self, settings: Settings, router: Router, tokenizers: TokenizerCache, pool: ModelPool,
                 prices: PriceQuotes, gates: Gates) -> None:
        self._settings = settings
        self._router = router
        self._tokenizers = tokenizers
        self._pool = pool
        self._prices = prices
        self._throttle = gates.throttle
        self._meter = gates.meter
        self._gate = gates.billing
        self._arrivals = gates.arrivals
        self._finishes = gates.finishes
        self._mirrors = gates.mirrors

    async def models(self, principal: Principal, via: Via) -> list[tuple[ModelSpec, str, Price]]:
        """The caller's models (the catalog and its fine-tunes, or an endpoint's deployments') with each
        one's live state and current prices."""
        now = datetime.now(UTC)
        return [(spec, str(self._pool.state(spec.id)), await self._prices.quote(spec, now))
                for spec in await self._router.visible(principal, via)]

    async def model(self, principal: Principal, model_id: str, via: Via) -> tuple[ModelSpec, str, Price]:
        spec = await self._router.resolve(principal, model_id, via)
        return spec, str(self._pool.state(spec.id)), await self._prices.quote(spec, datetime.now(UTC))

    async def chat(self, principal: Principal, request: ChatCompletionRequest, request_id: str,
                   via: Via) -> Generation:
        return await self._generate(principal, request, request_id, via, plan_chat)

    async def completion(self, principal: Principal, request: CompletionRequest, request_id: str,
                         via: Via) -> Generation:
        return await self._generate(principal, request, request_id, via, plan_completion)

    async def _generate(self, principal: Principal, request: ChatCompletionRequest | CompletionRequest,
                        request_id: str, via: Via, planner: Callable[..., Plan]) -> Generation:
        """Route, plan for the chosen deployment, start; then the mirrored copy, planned for its own."""
        def plan(target: Target, rid: str) -> Plan:
            return planner(request, target.model, self._tokenizer(target.model), request_id=rid,
                           max_n=self._settings.pool.max_n).placed(target.placement, target.group)

        target = await self._router.route(principal, request.model, via)
        generation = await self._start(principal, plan(target, request_id), target.capacity)
        if (mirror := target.mirror) is not None:
            prices = await self._prices.quote(mirror.model, datetime.now(UTC))
            self._mirrors.generation(principal, mirror.placement, lambda: plan(mirror, f"{request_id}-mirror"),
                                     prices)
        return generation

    async def embeddings(self, principal: Principal, request: EmbeddingRequest, request_id: str,
                         via: Via) -> tuple[EmbeddingPlan, list[list[float]], dict[str, str]]:
        target = await self._router.route(principal, request.model, via)

        def plan_for(chosen: Target, rid: str) -> EmbeddingPlan:
            return plan_embeddings(request, chosen.model, self._tokenizer(chosen.model),
                                   request_id=rid).placed(chosen.placement, chosen.group)

        plan = plan_for(target, request_id)
        spec = target.model
        await self._gate.ensure_available()
        prices = await self._prices.quote(spec, datetime.now(UTC),
                                          tier="batch" if plan.placement.batch is not None else "online")
        admission = await self._throttle.admit(principal, plan.prompt_tokens, prices.cost(plan.prompt_tokens, 0),
                                               target.capacity)
        started = datetime.now(UTC)
        try:
            result = await self._pool.embed(plan.job)
        except BaseException:
            await admission.release()
            raise
        event = usage_event(request_id, principal, spec, "embeddings", result.prompt_tokens, 0, started,
                            user=request.user, placement=plan.placement)
        try:
            await self._meter.record(event)
        finally:
            await admission.settle(result.prompt_tokens, prices.cost(result.prompt_tokens, 0))
        if (mirror := target.mirror) is not None:
            self._mirrors.embedding(principal, mirror.placement, lambda: plan_for(mirror, f"{request_id}-mirror"))
        return plan, result.vectors, {**admission.headers, "x-meterway-deployment": plan.placement.deployment}

    async def _start(self, principal: Principal, plan: Plan, capacity: Capacity | None) -> Generation:
        state = str(self._pool.state(plan.model.id if not plan.model.base else plan.model.base))
        await self._gate.ensure_available()
        prices = await self._prices.quote(plan.model, datetime.now(UTC),
                                          tier="batch" if plan.placement.batch is not None else "online")
        await self._arrivals.ready()  # a burst's requests go to the pool together (service/arrivals.py)
        admission = await self._throttle.admit(principal, plan.reserved_tokens,
                                               prices.cost(plan.prompt_tokens, plan.reserved_completion_tokens),
                                               capacity)
        run = Run(plan, principal, self._pool, self._meter, admission, prices,
                  self._settings.server.request_timeout_s)
        return await Generation.begin(run, state, self._finishes)

    def preload_tokenizers(self, catalog: list[ModelSpec]) -> None:
        """Build the catalog models' tokenizers now (a thread at startup), so that the first request for a
        model does not wait for its ``tokenizer.json`` to be parsed (0.2 s for SmolLM2's)."""
        for spec in catalog:
            try:
                self._tokenizer(spec)
            except ModelNotFound:
                pass  # not imported into this store: built on first use, if it ever is
            except Exception:  # a broken tokenizer fails that model's requests, not the server's start
                log.warning("tokenizer_preload_failed", model=spec.id, exc_info=True)

    def _tokenizer(self, spec: ModelSpec) -> PromptTokenizer:
        try:
            return self._tokenizers.get(spec.store_name if not spec.base else spec.base, spec.task,
                                        builtin=spec.builtin)
        except FileNotFoundError as exc:
            raise ModelNotFound(spec.id) from exc
