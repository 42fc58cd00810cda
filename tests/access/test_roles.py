"""Roles and scope against a real gateway: what each role may do (403 naming the role otherwise), a key scoped
to models or endpoints, an expired key (401), role and scope shown and changed — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.access.conftest import keyed

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ECHO, SMOLLM = "meterway-echo", "smollm2-135m-instruct"
USAGE = {"start": "2020-01-01", "end": "2100-01-01"}


def _chat(http: httpx.Client, model: str = ECHO, path: str = "/v1") -> httpx.Response:
    return http.post(f"{path}/chat/completions", json={"model": model, "max_tokens": 2,
                                                       "messages": [{"role": "user", "content": "hi"}]})


def _refused(answer: httpx.Response, *words: str) -> dict[str, Any]:
    assert answer.status_code == 403, answer.text
    error = dict(answer.json()["error"])
    assert error["type"] == "permission_error" and all(word in error["message"] for word in words), error
    return error


def _tenant() -> str:
    return f"acme-{uuid.uuid4().hex[:8]}"


def test_finance_reads_usage_but_cannot_call_a_model(gateway: ServerProcess) -> None:
    with keyed(gateway, _tenant(), role="finance") as finance:
        _refused(_chat(finance), "'finance'", "'invoke'")
        assert finance.get("/v1/usage", params=USAGE).status_code == 200
        assert finance.get("/v1/prices").status_code == 200
        assert ECHO in [m["id"] for m in finance.get("/v1/models").json()["data"]]
        _refused(finance.put(f"/v1/endpoints/ep-{uuid.uuid4().hex[:6]}", json={}), "'finance'", "'manage'")


def test_an_invoker_calls_a_model_but_cannot_read_usage(gateway: ServerProcess) -> None:
    with keyed(gateway, _tenant(), role="invoker") as invoker:
        assert _chat(invoker).status_code == 200
        _refused(invoker.get("/v1/usage", params=USAGE), "'invoker'", "'billing'")
        _refused(invoker.get("/v1/keys"), "'invoker'", "'keys'")
        _refused(invoker.get("/v1/endpoints"), "'invoker'", "'read'")
        _refused(invoker.get("/v1/audit"), "'invoker'", "'audit'")


def test_a_developer_manages_endpoints_but_not_keys(gateway: ServerProcess) -> None:
    tenant = _tenant()
    with keyed(gateway, tenant, role="developer") as developer:
        name = f"ep-{uuid.uuid4().hex[:6]}"
        assert developer.put(f"/v1/endpoints/{name}", json={}).status_code == 200
        _refused(developer.post("/v1/keys", json={"tenant": tenant, "name": "more"}), "admin")
        _refused(developer.get("/v1/keys"), "'developer'", "'keys'")
        _refused(developer.post(f"/v1/endpoints/{name}/keys"), "'developer'", "'keys'")
        _refused(developer.get("/v1/usage", params=USAGE), "'developer'", "'billing'")
        assert _chat(developer).status_code == 200


def test_a_reader_gets_an_endpoint_but_cannot_put_it(gateway: ServerProcess) -> None:
    tenant, name = _tenant(), f"ep-{uuid.uuid4().hex[:6]}"
    with keyed(gateway, tenant) as owner, keyed(gateway, tenant, role="reader") as reader:
        assert owner.put(f"/v1/endpoints/{name}", json={}).status_code == 200
        assert owner.put(f"/v1/endpoints/{name}/deployments/blue", json={"model": ECHO}).status_code == 200
        assert reader.get(f"/v1/endpoints/{name}").status_code == 200
        assert reader.get(f"/v1/endpoints/{name}/deployments/blue").status_code == 200
        assert reader.get("/v1/batches").status_code == 200 and reader.get("/v1/files").status_code == 200
        _refused(reader.put(f"/v1/endpoints/{name}", json={"description": "mine"}), "'reader'", "'manage'")
        _refused(reader.delete(f"/v1/endpoints/{name}/deployments/blue"), "'reader'", "'manage'")
        _refused(_chat(reader, path=f"/endpoints/{name}/v1"), "'reader'", "'invoke'")
        assert owner.get(f"/v1/endpoints/{name}").json()["description"] == ""


def test_a_key_scoped_to_a_model_is_refused_on_another(gateway: ServerProcess) -> None:
    with keyed(gateway, _tenant(), models=[ECHO]) as scoped:
        assert _chat(scoped).status_code == 200
        error = _refused(_chat(scoped, SMOLLM), SMOLLM)
        assert error["param"] == "model"
        assert [m["id"] for m in scoped.get("/v1/models").json()["data"]] == [ECHO]
        assert scoped.get(f"/v1/models/{SMOLLM}").status_code == 404


def test_a_key_scoped_to_an_endpoint_is_refused_elsewhere(gateway: ServerProcess) -> None:
    tenant, name, other = _tenant(), f"ep-{uuid.uuid4().hex[:6]}", f"ep-{uuid.uuid4().hex[:6]}"
    with keyed(gateway, tenant) as owner:
        for endpoint in (name, other):
            owner.put(f"/v1/endpoints/{endpoint}", json={})
            owner.put(f"/v1/endpoints/{endpoint}/deployments/blue", json={"model": ECHO})
            assert owner.put(f"/v1/endpoints/{endpoint}", json={"traffic": {"blue": 100}}).status_code == 200
    with keyed(gateway, tenant, endpoints=[name]) as scoped:
        assert _chat(scoped, "", f"/endpoints/{name}/v1").status_code == 200
        assert _refused(_chat(scoped, "", f"/endpoints/{other}/v1"), other)["param"] == "endpoint"
        assert _refused(_chat(scoped), "serverless")["param"] == "endpoint"  # /v1 is the endpoint 'serverless'
    with keyed(gateway, tenant, endpoints=["serverless"]) as serverless:
        assert _chat(serverless).status_code == 200
        _refused(_chat(serverless, "", f"/endpoints/{name}/v1"), name)


def test_an_expired_key_is_refused(gateway: ServerProcess) -> None:
    with gateway.admin() as admin:
        past = admin.post("/v1/keys", json={"tenant": _tenant(), "expires_at": int(time.time()) - 1})
        assert past.status_code == 400 and past.json()["error"]["param"] == "expires_at"
    expires_at = int(time.time()) + 3
    with keyed(gateway, _tenant(), expires_at=expires_at) as expiring:
        assert expiring.get("/v1/models").status_code == 200
        time.sleep(max(0.0, expires_at - time.time()) + 2.5)  # past the expiry and the 2 s cache of a verification
        refused = expiring.get("/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_role_and_scope_are_shown_updated_and_kept_by_rotation(gateway: ServerProcess) -> None:
    created = gateway.create_key(_tenant(), role="invoker", models=[ECHO], endpoints=["serverless"])
    assert (created["role"], created["models"], created["endpoints"]) == ("invoker", [ECHO], ["serverless"])
    with gateway.admin() as admin:
        changed = admin.patch(f"/v1/keys/{created['id']}", json={"role": "finance", "models": None})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["role"], changed.json()["models"], changed.json()["endpoints"]) == (
            "finance", None, ["serverless"])
        bad = admin.patch(f"/v1/keys/{created['id']}", json={"role": "admin"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "role"
        for empty in ({"models": []}, {"endpoints": []}):  # a scope names something; null is "any"
            assert admin.patch(f"/v1/keys/{created['id']}", json=empty).status_code == 400, empty
            assert admin.post("/v1/keys", json={"tenant": created["tenant"], **empty}).status_code == 400, empty
        rotated = admin.post(f"/v1/keys/{created['id']}/rotate").json()
        listed = {k["id"]: k for k in admin.get("/v1/keys", params={"tenant": created["tenant"]}).json()["data"]}
    assert (rotated["role"], rotated["endpoints"]) == ("finance", ["serverless"])
    assert listed[created["id"]]["role"] == "finance"
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {rotated['secret']}"}) as http:
        _refused(_chat(http), "'finance'")
        assert http.get("/v1/usage", params=USAGE).status_code == 200
