"""Retries on a real 429 (a key with a one-request-a-minute limit), honouring the server's Retry-After."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from meterway import Client, RateLimitError
from meterway.sdk._retries import MAX_WAIT_S

if TYPE_CHECKING:
    from tests.server import ServerProcess

CHAT = {"model": "meterway-echo", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


class Counting(httpx.HTTPTransport):
    """The network, counting the requests that went out."""

    sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


def test_429_is_retried_after_the_servers_retry_after(server: ServerProcess, tenant: str) -> None:
    secret = str(server.create_key(tenant, rpm=1)["secret"])
    transport, waits = Counting(), []
    with Client(server.url, secret, max_retries=2, transport=transport) as client:
        client._sleep = waits.append
        assert client.post("/v1/chat/completions", json=CHAT)["object"] == "chat.completion"
        with pytest.raises(RateLimitError) as limited:
            client.post("/v1/chat/completions", json=CHAT)
    told = float(limited.value.headers["retry-after"])
    assert transport.sent == 1 + 3  # the first call, then the second and its two retries
    assert waits == [min(told, MAX_WAIT_S)] * 2
    assert limited.value.status_code == 429 and limited.value.type


def test_without_retries_a_429_raises_at_once(server: ServerProcess, tenant: str) -> None:
    secret = str(server.create_key(tenant, rpm=1)["secret"])
    transport = Counting()
    with Client(server.url, secret, max_retries=0, transport=transport) as client:
        client.post("/v1/chat/completions", json=CHAT)
        with pytest.raises(RateLimitError):
            client.post("/v1/chat/completions", json=CHAT)
    assert transport.sent == 2
