"""Fixtures for the end-to-end API tests: tenant keys and the official openai client."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import openai
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess


@pytest.fixture
def tenant_key(server: ServerProcess) -> str:
    """A fresh key of a fresh tenant."""
    return str(server.create_key(f"t-{uuid.uuid4().hex[:8]}")["secret"])


@pytest.fixture
def client(server: ServerProcess, tenant_key: str) -> openai.AsyncOpenAI:
    """The official client over a real socket, without retries so that errors show as they are."""
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=tenant_key, max_retries=0)
