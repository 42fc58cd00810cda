"""Calling a model through an endpoint's ``scoring_uri`` with the official openai client: the traffic split
within statistical bounds, pinning a deployment by header, the ``model`` field, endpoint keys (rotation
without downtime, refused elsewhere), tenants isolated, and usage metered per endpoint and deployment — on
SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import openai
import pytest

from tests.api.ledger import ledger_rows
from tests.endpoints.helpers import ECHO, MESSAGES, make_endpoint, served_by, tenant_client
from tests.server import ADMIN_KEY, ServerProcess

pytestmark = pytest.mark.slow


def test_split_pin_and_model_field(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": ECHO, "green": ECHO}, traffic={"blue": 70, "green": 30})
        assert endpoint["scoring_uri"] == f"{gateway.url}/endpoints/{endpoint['name']}/v1"
        keys = acme.post(f"/v1/endpoints/{endpoint['name']}/keys").json()
    client = openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=keys["primary_key"], max_retries=0)

    counts = Counter(served_by(client)[0] for _ in range(300))  # model empty: the endpoint decides
    assert set(counts) == {"blue", "green"}
    assert 170 <= counts["blue"] <= 250, counts  # 210 expected; ±5 standard deviations (7.9 each)

    deployment, completion = served_by(client, model=ECHO, extra_headers={"azureml-model-deployment": "green"})
    assert deployment == "green" and completion.model == ECHO
    assert served_by(client, model=ECHO, extra_headers={"x-meterway-deployment": "blue"})[0] == "blue"
    with pytest.raises(openai.NotFoundError) as unknown:
        served_by(client, model=ECHO, extra_headers={"azureml-model-deployment": "red"})
    assert unknown.value.body["param"] == "azureml-model-deployment"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as other_model:
        served_by(client, model="smollm2-135m-instruct")
    assert other_model.value.body["param"] == "model"  # type: ignore[index]
    assert [m.id for m in client.models.list()] == [ECHO]

    omitted = {"messages": MESSAGES, "max_tokens": 2}  # no `model` at all: the endpoint decides
    auth = {"Authorization": f"Bearer {keys['primary_key']}"}
    answer = httpx.post(f"{endpoint['scoring_uri']}/chat/completions", json=omitted, headers=auth)
    assert answer.status_code == 200 and answer.json()["model"] == ECHO
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    serverless = httpx.post(f"{gateway.url}/v1/chat/completions", json=omitted, headers=admin)
    assert serverless.status_code == 400 and serverless.json()["error"]["param"] == "model"


def test_endpoint_keys_rotate_and_stay_on_their_endpoint(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        first = make_endpoint(acme, {"blue": ECHO}, traffic={"blue": 100})
        second = make_endpoint(acme, {"blue": ECHO}, traffic={"blue": 100})
        keys = acme.post(f"/v1/endpoints/{first['name']}/keys").json()
        assert set(keys) == {"primary_key", "secondary_key"} and keys["primary_key"] != keys["secondary_key"]
        assert acme.post(f"/v1/endpoints/{first['name']}/keys").json() == keys  # listed again: the same keys
        renewed = acme.post(f"/v1/endpoints/{first['name']}/keys/regenerate", json={"key_type": "secondary"})
        assert renewed.status_code == 200
        assert renewed.json()["primary_key"] == keys["primary_key"]
        assert renewed.json()["secondary_key"] != keys["secondary_key"]
        bad_type = acme.post(f"/v1/endpoints/{first['name']}/keys/regenerate", json={"key_type": "tertiary"})
        assert bad_type.status_code == 400

    def call(base_url: str, key: str) -> None:
        served_by(openai.OpenAI(base_url=base_url, api_key=key, max_retries=0))

    call(first["scoring_uri"], keys["primary_key"])  # the key not regenerated keeps working
    call(first["scoring_uri"], renewed.json()["secondary_key"])
    for base_url, key in ((first["scoring_uri"], keys["secondary_key"]),  # replaced
                          (second["scoring_uri"], keys["primary_key"]),  # another endpoint
                          (f"{gateway.url}/v1", keys["primary_key"])):  # the serverless API
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key=key, max_retries=0).chat.completions.create(
                model=ECHO, messages=MESSAGES, max_tokens=2)
    management = httpx.get(f"{gateway.url}/v1/endpoints", headers={"Authorization": f"Bearer {keys['primary_key']}"})
    assert management.status_code == 401  # an endpoint key manages nothing


def test_another_tenant_sees_no_endpoint(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": ECHO}, traffic={"blue": 100})
        owner_key = acme.headers["authorization"].removeprefix("Bearer ")
    outsider = gateway.create_key(f"globex-{uuid.uuid4().hex[:6]}")["secret"]
    with pytest.raises(openai.NotFoundError):
        served_by(openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=str(outsider), max_retries=0))
    # The owning tenant's own keys call it too, as the admin does.
    assert served_by(openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=owner_key, max_retries=0))[0] == "blue"


async def test_usage_is_metered_per_endpoint_and_deployment(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": ECHO, "green": ECHO}, traffic={"blue": 50, "green": 50})
        key = acme.headers["authorization"].removeprefix("Bearer ")
        client = openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)
        served = {c.id: d for d, c in (served_by(client) for _ in range(12))}  # completion id -> deployment
        rows = (await ledger_rows(gateway, list(served)))["by_id"]
        for completion_id, deployment in served.items():
            row = rows[completion_id]
            assert (row["endpoint_name"], row["deployment"], row["billable"]) == (endpoint["name"], deployment, True)
        report = acme.get("/v1/usage", params={"group_by": "endpoint,deployment"}).json()
        lines = {(line["endpoint"], line["deployment"]): line["requests"] for line in report["data"]}
        assert lines == dict(Counter((endpoint["name"], d) for d in served.values()))


def test_a_deployment_has_limits_of_its_own(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": ECHO}, traffic={"blue": 100})
        limited = acme.put(f"/v1/endpoints/{endpoint['name']}/deployments/blue", json={"model": ECHO, "rpm": 3})
        assert limited.status_code == 200 and limited.json()["rpm"] == 3
        refused = acme.put(f"/v1/endpoints/{endpoint['name']}/deployments/blue", json={"model": ECHO, "rpm": 0})
        assert refused.status_code == 400 and "rpm" in refused.text
        key = acme.headers["authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)
    for _ in range(3):
        served_by(client)
    with pytest.raises(openai.RateLimitError) as limit:
        served_by(client)
    assert f"deployment {endpoint['name']}/blue" in limit.value.message
    assert float(limit.value.response.headers["retry-after"]) > 0
    # The caller's key has no such limit: the serverless API still answers it.
    serverless = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    assert serverless.chat.completions.create(model=ECHO, messages=MESSAGES, max_tokens=2).choices
