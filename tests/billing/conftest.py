"""Billing fixtures: a connected database per test, settings, an event factory, the Stripe server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from billing.events import UsageEvent
from meterway.db import Database
from meterway.settings import DatabaseSettings, Settings
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
