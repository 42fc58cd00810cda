"""Any body a client can send gets a 4xx with OpenAI's error body, never a 500 (and nothing runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
CHAT = b'{"model": "meterway-echo", "messages": [{"role": "user", "content": %s}], "max_tokens": %s}'

BODIES = {
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep nesting in a field": CHAT % (b"[" * 50_000 + b"]" * 50_000, b"2"),
    "huge integer": CHAT % (b'"hi"', b"1" + b"0" * 400),
    "huge float": CHAT % (b'"hi"', b"1e400"),
    "invalid utf-8": CHAT % (b'"\xff\xfe"', b"2"),
    "lone surrogate": CHAT % (b'"\\ud800"', b"2"),
    "wrong top-level type": b'["model", "messages"]',
    "a bare string": b'"hello"',
    "empty body": b"",
    "not json": b"model=meterway-echo",
    "truncated": b'{"model": "meterway-echo", "messages": [',
    "nul bytes": b"\x00" * 64,
}


@pytest.mark.battery(13)
@pytest.mark.parametrize("name", list(BODIES))
def test_a_malformed_body_is_a_4xx_with_openais_error_body(server: ServerProcess, tenant_key: str,
                                                           name: str) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=BODIES[name], timeout=60,
                          headers={"authorization": f"Bearer {tenant_key}", "content-type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_json_route_refuses_another_content_type(server: ServerProcess, tenant_key: str,
                                                   content_type: str) -> None:
    body = b'{"model": "meterway-echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}'
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=60,
                          headers={"authorization": f"Bearer {tenant_key}", "content-type": content_type})
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [
    b'{"model": "meterway-echo", "model": "other", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "meterway-echo", "messages": [{"role": "user", "role": "system", "content": "hi"}]}',
])
def test_a_repeated_key_is_refused_by_name(server: ServerProcess, tenant_key: str, body: bytes) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=60,
                          headers={"authorization": f"Bearer {tenant_key}", "content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "repeats the key" in error["message"]


def test_nesting_is_refused_past_the_configured_depth(server: ServerProcess, tenant_key: str) -> None:
    def chat(depth: int) -> httpx.Response:  # the whole body is ``depth`` levels deep
        nested: dict[str, object] = {}
        for _ in range(depth - 2):
            nested = {"a": nested}
        body = {"model": "meterway-echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                "seed": 1, "extra": nested}
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60,
                          headers={"authorization": f"Bearer {tenant_key}"})

    within = chat(64).json()["error"]  # past the depth check, refused by the request schema instead
    assert within["code"] != "invalid_json" and within["param"] == "extra"
    refused = chat(65)
    assert refused.status_code == 400 and "nested more than 64 levels" in refused.json()["error"]["message"]
