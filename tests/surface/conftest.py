"""Fixtures for the OpenAI-surface tests: the official client on a running server with the real SmolLM2."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import openai
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def client(server: ServerProcess) -> openai.AsyncOpenAI:
    """A fresh tenant's key in the official client, without retries so that errors show as they are."""
    key = str(server.create_key(f"t-{uuid.uuid4().hex[:8]}")["secret"])
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
