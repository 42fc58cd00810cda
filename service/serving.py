"""The serving service: resolves a model for the caller, validates, admits, and starts the run.

Routes call one method here; this module owns the order of the request path (see docs/architecture.md):
resolve → tokenize/validate → billing available → throttle admit → pool → meter → settle.
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
    from decimal import Decimal

    from billing.money import Price
    from meterway.settings import Settings
    from models.catalog import ModelSpec
    from models.pool.api import ModelPool
    from models.tokenizer import PromptTokenizer, TokenizerCache
    from service.arrivals import Arrivals
    from service.auth import Principal
    from service.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

log = structlog.get_logger(__name__)


class ModelResolver(Protocol):
    """Which models a caller may see and call; endpoints and deployments plug in here."""

    async def visible(self, principal: Principal) -> list[ModelSpec]: ...

    async def resolve(self, model_id: str, principal: Principal) -> ModelSpec: ...


class AdmissionControl(Protocol):
    """Admission control: reserve before the model runs, settle after."""

    async def admit(self, principal: Principal, tokens: int, cost: Decimal) -> Admission: ...


class PriceQuotes(Protocol):
    """The prices in force for a model at a moment (the price book)."""

    async def quote(self, model: ModelSpec, at: datetime) -> Price: ...


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


class ServingService:
    """Runs chat, completion and embedding requests for a principal."""

    def __init__(self, settings: Settings, resolver: ModelResolver, tokenizers: TokenizerCache, pool: ModelPool,
                 prices: PriceQuotes, gates: Gates) -> None:
        self._settings = settings
        self._resolver = resolver
        self._tokenizers = tokenizers
        self._pool = pool
        self._prices = prices
        self._throttle = gates.throttle
        self._meter = gates.meter
        self._gate = gates.billing
        self._arrivals = gates.arrivals
        self._finishes = gates.finishes

    async def models(self, principal: Principal) -> list[tuple[ModelSpec, str, Price]]:
        """The caller's catalog with each model's live state and current prices."""
        now = datetime.now(UTC)
        return [(spec, str(self._pool.state(spec.id)), await self._prices.quote(spec, now))
                for spec in await self._resolver.visible(principal)]

    async def model(self, principal: Principal, model_id: str) -> tuple[ModelSpec, str, Price]:
        spec = await self._resolver.resolve(model_id, principal)
        return spec, str(self._pool.state(spec.id)), await self._prices.quote(spec, datetime.now(UTC))

    async def chat(self, principal: Principal, request: ChatCompletionRequest, request_id: str) -> Generation:
        spec = await self._resolver.resolve(request.model, principal)
        plan = plan_chat(request, spec, self._tokenizer(spec), request_id=request_id,
                         max_n=self._settings.pool.max_n)
        return await self._start(principal, plan)

    async def completion(self, principal: Principal, request: CompletionRequest, request_id: str) -> Generation:
        spec = await self._resolver.resolve(request.model, principal)
        plan = plan_completion(request, spec, self._tokenizer(spec), request_id=request_id,
                               max_n=self._settings.pool.max_n)
        return await self._start(principal, plan)

    async def embeddings(self, principal: Principal, request: EmbeddingRequest,
                         request_id: str) -> tuple[EmbeddingPlan, list[list[float]], dict[str, str]]:
        spec = await self._resolver.resolve(request.model, principal)
        plan = plan_embeddings(request, spec, self._tokenizer(spec), request_id=request_id)
        await self._gate.ensure_available()
        prices = await self._prices.quote(spec, datetime.now(UTC))
        admission = await self._throttle.admit(principal, plan.prompt_tokens, prices.cost(plan.prompt_tokens, 0))
        started = datetime.now(UTC)
        try:
            result = await self._pool.embed(plan.job)
        except BaseException:
            await admission.release()
            raise
        event = usage_event(request_id, principal, spec, "embeddings", result.prompt_tokens, 0, started,
                            user=request.user)
        try:
            await self._meter.record(event)
        finally:
            await admission.settle(result.prompt_tokens, prices.cost(result.prompt_tokens, 0))
        return plan, result.vectors, admission.headers

    async def _start(self, principal: Principal, plan: Plan) -> Generation:
        state = str(self._pool.state(plan.model.id if not plan.model.base else plan.model.base))
        await self._gate.ensure_available()
        prices = await self._prices.quote(plan.model, datetime.now(UTC))
        await self._arrivals.ready()  # a burst's requests go to the pool together (service/arrivals.py)
        admission = await self._throttle.admit(principal, plan.reserved_tokens,
                                               prices.cost(plan.prompt_tokens, plan.reserved_completion_tokens))
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
