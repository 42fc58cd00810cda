"""Errors a caller sees: OpenAI's body and status codes, refused before any model runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Hello"}]


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


@pytest.mark.battery(11)
async def test_missing_and_bad_keys_are_401(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.get("/v1/models")
        bad = await http.get("/v1/models", headers={"Authorization": "Bearer mw-not-a-real-key-at-all-000000"})
    assert missing.status_code == 401 and _error(missing)["code"] == "missing_api_key"
    assert bad.status_code == 401 and _error(bad)["code"] == "invalid_api_key"
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="mw-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)


@pytest.mark.battery(11)
async def test_revoked_key_is_refused(server: ServerProcess) -> None:
    created = server.create_key("revoked-tenant")
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=str(created["secret"]), max_retries=0)
    assert (await client.models.list()).data
    with server.admin() as admin:
        assert admin.delete(f"/v1/keys/{created['id']}").json()["deleted"] is True
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-17", messages=HELLO)
    assert caught.value.body == {"message": "The model 'gpt-17' does not exist or you do not have access to it.",  # type: ignore[comparison-overlap]
                                 "type": "invalid_request_error", "param": "model", "code": "model_not_found"}


async def test_malformed_json_and_wrong_types_name_the_field(server: ServerProcess, tenant_key: str) -> None:
    headers = {"Authorization": f"Bearer {tenant_key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        broken = await http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [')
        typed = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": "ten"})
        ranged = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "temperature": 5})
        missing = await http.post("/v1/chat/completions", json={"model": MODEL})
    assert broken.status_code == 400 and _error(broken)["type"] == "invalid_request_error"
    assert typed.status_code == 400 and _error(typed)["param"] == "max_tokens"
    assert ranged.status_code == 400 and _error(ranged)["param"] == "temperature"
    assert missing.status_code == 400 and _error(missing)["param"] == "messages"


@pytest.mark.battery(13)
async def test_prompt_longer_than_context_is_refused(client: openai.AsyncOpenAI) -> None:
    long_prompt = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=long_prompt, max_tokens=5)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as too_much:
        await client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=100_000)
    assert too_much.value.code == "context_length_exceeded"


@pytest.mark.battery(13)
async def test_oversized_body_is_413(server: ServerProcess, tenant_key: str) -> None:
    padding = b"a" * (10 << 20)
    body = b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "' + padding + b'"}]}'
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        headers = {"Authorization": f"Bearer {tenant_key}", "content-type": "application/json"}
        response = await http.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == 413 and _error(response)["code"] == "payload_too_large"


async def test_too_many_choices_and_wrong_task_like_openai(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO, n=99)
    assert caught.value.param == "n"
    with pytest.raises(openai.NotFoundError) as wrong:
        await client.chat.completions.create(model="all-minilm-l6-v2", messages=HELLO)
    assert wrong.value.code == "model_not_supported"


async def test_every_response_has_a_request_id(server: ServerProcess, tenant_key: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ok = await http.get("/v1/models", headers={"Authorization": f"Bearer {tenant_key}"})
        refused = await http.get("/v1/models")
        unknown = await http.get("/v1/nothing-here", headers={"Authorization": f"Bearer {tenant_key}"})
    assert ok.headers["x-request-id"] and refused.headers["x-request-id"]
    assert unknown.status_code == 404 and _error(unknown)["code"] == "unknown_url"


async def test_openapi_schema_and_swagger_are_served(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        schema = (await http.get("/schema/openapi.json")).json()
        swagger = await http.get("/schema/swagger")
        health = await http.get("/health")
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/keys",
                 "/v1/usage"):
        assert path in schema["paths"], path
    assert swagger.status_code == 200 and "swagger" in swagger.text.lower()
    assert health.status_code == 200
