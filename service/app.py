"""The composition root: ``create_app(settings)`` wires every part of meterway, and nothing else does.

Services are built here once per app and handed to handlers through Litestar's dependency injection; the
lifespan starts and stops the pool, the ledger consumer and the database.
"""

from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from audit.service import AuditLog
from batches.service import BatchService
from billing.wiring import Billing, build_billing
from console import console_handlers
from endpoints.service import EndpointService
from files.store import FileStore
from identity.service import IdentityService
from identity.tokens import looks_like_token
from meterway.db import Database
from meterway.errors import MeterwayError
from meterway.logs import configure_logging
from models.catalog import ModelSpec, load_catalog
from models.finetune.fine_tunes import FineTuneCatalog
from models.pool import build_pool
from models.tokenizer import TokenizerCache
from service.arrivals import Arrivals
from service.audit_trail import audit_dependencies
from service.auth import Principal, secret_from_headers
from service.batch_runner import BatchRunner
from service.capacity import DedicatedCapacity
from service.guard import authorize
from service.http.errors import handle_exception
from service.http.json_body import json_body_middleware
from service.http.middleware import (
    allow_middleware,
    arrivals_middleware,
    request_id_middleware,
)
from service.http.openapi import StrictStructSchemas, accurate_components, document_csv, document_errors
from service.key_throttle import KeyThrottle
from service.keys import KeyService
from service.lifecycle import Finishes
from service.mirroring import Mirrors
from service.pricing import BookQuotes
from service.resolver import CatalogResolver
from service.routes.audit import audit_handlers
from service.routes.batches import batch_dependencies, batch_handlers
from service.routes.billing import billing_dependencies, billing_handlers
from service.routes.endpoints import endpoint_dependencies, endpoint_handlers
from service.routes.files import file_dependencies, file_handlers
from service.routes.fine_tunes import fine_tune_dependencies, fine_tune_handlers
from service.routes.health import health_handlers
from service.routes.identity import identity_dependencies, identity_handlers
from service.routes.keys import key_handlers
from service.routes.openai import openai_handlers, provide_via
from service.routes.periods import period_handlers
from service.routes.tenants import tenant_handlers
from service.routes.uploads import upload_dependencies, upload_handlers
from service.routing import FRESH_S as ROUTES_FRESH_S
from service.routing import Routes
from service.secrets import load_secrets
from service.serving import Gates, ServingService
from service.telemetry import Telemetry
from service.tenants import TenantService
from service.throttle import build_throttle
from service.tokens import TokenAuth

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from endpoints.service import DeploymentSpec
    from meterway.settings import Settings
    from models.pool.api import ModelPool
    from service.inference import UsageRecorder


@dataclass
class AppParts:
    """Everything the app owns, built once."""

    settings: Settings
    database: Database
    keys: KeyService
    pool: ModelPool
    billing: Billing
    serving: ServingService
    finishes: Finishes
    telemetry: Telemetry
    throttle: KeyThrottle
    fine_tunes: FineTuneCatalog
    catalog: list[ModelSpec]
    quotes: BookQuotes
    arrivals: Arrivals
    endpoints: EndpointService
    routes: Routes
    mirrors: Mirrors
    capacity: DedicatedCapacity
    batches: BatchService
    batch_runner: BatchRunner
    identities: IdentityService
    tokens: TokenAuth


def build_parts(settings: Settings, *, meter: UsageRecorder | None = None) -> AppParts:
    """Construct (without starting) every service of the app.

    ``meter`` replaces billing's meter on the request path; only benchmarks that isolate the gateway's own
    cost pass one (``bench/metering_bench.py``).
    """
    secrets_ = load_secrets(settings)
    database = Database.connect(settings.database_url, echo=settings.database.echo)
    catalog: list[ModelSpec] = load_catalog(include_test_model=settings.server.enable_test_model)
    keys = KeyService(database.sessions, secrets_.hasher, secrets_.admin_key, settings.auth.rotation_grace_s,
                      settings.limits)
    pool = build_pool(settings, settings.store_dir, catalog)
    billing = build_billing(settings, database)
    fine_tunes = FineTuneCatalog.from_settings(settings, database.sessions, catalog, prices=billing.prices)
    throttle = KeyThrottle(build_throttle(settings))
    resolver = CatalogResolver(catalog, fine_tunes.visible, fine_tunes.find)
    quotes = BookQuotes(billing.prices)
    arrivals = Arrivals(hold_s=settings.server.burst_hold_ms / 1000)
    finishes = Finishes()
    telemetry = Telemetry(pool, settings.server.metrics_token)

    async def check_deployment(endpoint: str, name: str, tenant: str, spec: DeploymentSpec) -> None:
        await capacity.check(endpoint, name, tenant, spec)

    endpoints = EndpointService(database.sessions, check_deployment, secrets_.hasher.digest, drain_s=ROUTES_FRESH_S)
    capacity = DedicatedCapacity(pool, endpoints, resolver, billing.meter, billing.prices, telemetry.registry)
    batches = BatchService(database.sessions, queued_lines=settings.limits.batch_queued_lines)
    routes = Routes(resolver, endpoints, secrets_.hasher.digest)
    mirrors = Mirrors(pool, meter or billing.meter, settings.server.request_timeout_s,
                      settings.server.mirror_max_inflight, telemetry.registry)
    gates = Gates(throttle, meter or billing.meter, billing.meter, arrivals, finishes, mirrors)
    serving = ServingService(settings, routes, TokenizerCache(settings.store_dir), pool, quotes, gates)
    identities = IdentityService(database.sessions, local=settings.is_local,
                                 platform_issuer=settings.auth.platform_issuer)
    tokens = TokenAuth(identities, database.sessions, settings.auth, settings.limits)
    return AppParts(settings, database, keys, pool, billing, serving, finishes, telemetry, throttle, fine_tunes,
                    catalog, quotes, arrivals, endpoints, routes, mirrors, capacity, batches,
                    BatchRunner(batches, FileStore(settings.store_dir / ".files"), serving,
                                tokens.batch_principals(keys.batch_principal), telemetry.registry,
                                concurrency=_batch_lines_in_flight(settings)), identities, tokens)


def _batch_lines_in_flight(settings: Settings) -> int:
    """Enough batch lines in flight to fill every row the engine gives them, and a quarter more queued so that a
    finished row is refilled at the next step."""
    rows = max(settings.pool.max_batch, settings.pool.background_batch)
    return rows + max(2, rows // 4)


def _freeze_startup_heap() -> None:
    """Move everything built at startup (modules, the app, routes, the catalog) out of the collector's reach.

    A full garbage collection walks every tracked object; without this it walked the startup heap each time,
    about 120-150 ms every few seconds under load (bench/gateway_bench.py), stalling every request in flight.
    Frozen objects are never collected, which is what a process-lifetime heap wants anyway.
    """
    gc.collect()
    gc.freeze()


def _principal_provider(parts: AppParts) -> Callable[[Request[Any, Any, Any]], Awaitable[Principal]]:
    """Who a request acts as (a token, an endpoint key or a tenant key), admitted by its endpoint's auth_mode
    and allowed by its route's declared permission."""
    async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        secret = secret_from_headers(request.headers.get("authorization"), request.headers.get("api-key"))
        endpoint = request.path_params.get("endpoint")
        if secret and looks_like_token(secret):
            principal = await parts.tokens.authenticate(secret)
        else:
            endpoint_key = secret and await parts.routes.authenticate(endpoint, secret)
            principal = endpoint_key or (await parts.keys.authenticate(secret)).principal
        principal = await parts.routes.admit(principal, endpoint)  # the endpoint's auth_mode
        authorize(principal, request)  # the route's declared permission (service/guard.py)
        return principal

    return provide_principal


def _dependencies(settings: Settings, parts: AppParts, tenants: TenantService,
                  audit_log: AuditLog) -> dict[str, Provide]:
    return {
        "principal": Provide(_principal_provider(parts)),
        "via": Provide(provide_via),
        "keys": Provide(lambda: parts.keys, use_cache=True, sync_to_thread=False),
        "tenants": Provide(lambda: tenants, use_cache=True, sync_to_thread=False),
        "serving": Provide(lambda: parts.serving, use_cache=True, sync_to_thread=False),
        "telemetry": Provide(lambda: parts.telemetry, use_cache=True, sync_to_thread=False),
        **billing_dependencies(parts.billing),
        **fine_tune_dependencies(parts.fine_tunes),
        **upload_dependencies(settings.store_dir, settings.server.max_upload_bytes),
        **endpoint_dependencies(parts.endpoints, parts.capacity),
        **batch_dependencies(parts.batches, parts.routes),
        **file_dependencies(settings.server.max_upload_bytes),
        **identity_dependencies(parts.identities),
        **audit_dependencies(audit_log),
    }


def create_app(settings: Settings, *, meter: UsageRecorder | None = None) -> Litestar:
    """The meterway HTTP app for ``settings`` (``meter``: see ``build_parts``)."""
    configure_logging(settings.server.log_level)
    parts = build_parts(settings, meter=meter)
    tenants = TenantService(parts.database.sessions, parts.keys.forget_cached)
    audit_log = AuditLog(parts.database.sessions)

    dependencies = _dependencies(settings, parts, tenants, audit_log)
    handlers = [*openai_handlers, *key_handlers, *tenant_handlers, *health_handlers, *billing_handlers,
                *period_handlers,
                *fine_tune_handlers, *upload_handlers, *endpoint_handlers, *batch_handlers,
                *file_handlers, *identity_handlers, *audit_handlers]
    document_errors(handlers)
    app = Litestar(
        route_handlers=[*handlers, console_handlers(settings)],
        dependencies=dependencies,
        exception_handlers={Exception: handle_exception, MeterwayError: handle_exception},
        middleware=[DefineMiddleware(request_id_middleware, observe=parts.telemetry.observe),
                    DefineMiddleware(arrivals_middleware, arrivals=parts.arrivals), allow_middleware,
                    DefineMiddleware(json_body_middleware, max_depth=settings.server.json_max_depth,
                                     max_bytes=settings.server.max_body_bytes)],
        lifespan=[_lifespan(parts)],
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=_openapi(),
        plugins=[StrictStructSchemas()],
        logging_config=None,
        debug=False,
    )
    accurate_components(app)
    document_csv(app, "/v1/usage")
    document_csv(app, "/v1/billing/periods/{period}/statements")
    return app


def _lifespan(parts: AppParts) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Start every service of the app, and stop them in order on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        await parts.billing.start(parts.catalog)
        await parts.throttle.start()
        await parts.pool.start()
        parts.keys.start()
        parts.quotes.start()
        parts.routes.start()
        parts.capacity.start()
        parts.batch_runner.start()
        parts.tokens.start()
        _freeze_startup_heap()
        tokenizers = asyncio.create_task(asyncio.to_thread(parts.serving.preload_tokenizers, parts.catalog))
        try:
            yield
        finally:
            await tokenizers
            await parts.batch_runner.close()
            await parts.mirrors.drain()
            await parts.finishes.drain()
            await parts.capacity.close()
            await parts.pool.close()
            await parts.keys.close()
            await parts.quotes.close()
            await parts.routes.close()
            await parts.tokens.close()
            await parts.billing.stop()
            await parts.throttle.close()
            await parts.database.close()

    return lifespan


def _openapi() -> OpenAPIConfig:
    bearer = SecurityScheme(type="http", scheme="bearer", description="A meterway API key (mw-...), or an "
                            "OpenID Connect token (a JWT) of the tenant's issuer or the platform's")
    api_key = SecurityScheme(type="apiKey", name="api-key", security_scheme_in="header")
    return OpenAPIConfig(
        title="meterway", version="0.1.0", path="/schema",
        description="Serverless, per-token-billed model API, compatible with OpenAI's.",
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(security_schemes={"bearer": bearer, "api-key": api_key}),
        security=[{"bearer": []}, {"api-key": []}],
    )

