"""Billing fixtures: a connected database per test, settings, an event factory, the Stripe server, an HTTP
client of the billing routes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from audit.service import AuditLog
from billing.events import UsageEvent
from billing.wiring import build_billing
from meterway.db import Database
from meterway.settings import DatabaseSettings, Settings
from service.audit_trail import audit_dependencies
from service.auth import Principal
from service.guard import authorize
from service.http.errors import handle_exception
from service.routes.billing import billing_dependencies, billing_handlers
from tests.billing.stripe_server import StripeServer

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
EventFactory = Callable[..., UsageEvent]


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The migrated database (SQLite and PostgreSQL), connected."""
    db = Database.connect(database_url)
    yield db
    await db.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings on the test database, with METERWAY_HOME in the test's temporary directory."""
    return Settings.from_env({}, home=tmp_path, database=DatabaseSettings(url=database_url))


@pytest.fixture
def make_event() -> EventFactory:
    """Usage events with unique request ids; keyword arguments override any field."""

    def make(**fields: object) -> UsageEvent:
        started = fields.pop("started_at", T0)
        values: dict[str, object] = {
            "request_id": f"req-{uuid.uuid4().hex}", "tenant": "acme", "key_id": "key-1",
            "model": "smollm2-135m-instruct", "endpoint": "chat.completions", "prompt_tokens": 11,
            "completion_tokens": 7, "started_at": started,
            "finished_at": started + timedelta(milliseconds=250),  # type: ignore[operator]
        }
        values.update(fields)
        return UsageEvent(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def stripe_server() -> Iterator[StripeServer]:
    """A Stripe-compatible meter event endpoint on a free local port."""
    server = StripeServer().start()
    yield server
    server.stop()


def _billing_app(billing: Any, database: Database) -> Litestar:
    """The billing routes alone; the ``x-tenant`` header stands in for a tenant's key, none for the admin's
    (authorized by the gateway's guard)."""

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        tenant = request.headers.get("x-tenant")
        found = Principal(tenant=tenant, key_id="k", is_admin=tenant is None)
        authorize(found, request)
        return found

    return Litestar(route_handlers=billing_handlers,
                    dependencies={"principal": Provide(principal), **billing_dependencies(billing),
                                  **audit_dependencies(AuditLog(database.sessions))},
                    exception_handlers={Exception: handle_exception})  # the gateway's one error mapping


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An HTTP client of the billing routes on the test database."""
    # The test client runs the app on its own event loop: give it its own, unpooled engine.
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    app_database = Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    async with AsyncTestClient(_billing_app(build_billing(settings, app_database), app_database)) as test_client:
        yield test_client
    await engine.dispose()
