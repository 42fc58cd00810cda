"""Fixtures for the SDK's tests: ``meterway.Client`` against the session's real server, as admin and as a
fresh tenant."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from meterway import Client
from tests.server import ADMIN_KEY

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.server import ServerProcess


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Client]:
    """The SDK with the admin key, without retries so that errors show as they are."""
    with Client(server.url, ADMIN_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def tenant() -> str:
    """A fresh tenant name."""
    return f"sdk-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tenant_client(server: ServerProcess, tenant: str) -> Iterator[Client]:
    """The SDK with a fresh owner key of ``tenant``."""
    with Client(server.url, str(server.create_key(tenant)["secret"]), max_retries=0) as client:
        yield client
