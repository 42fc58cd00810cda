"""Endpoint and deployment management over HTTP: idempotent PUTs, the traffic and mirror rules, deletes
refused while traffic points at a deployment, tenants isolated, and concurrent weight changes that never
leave traffic summing to anything but 100 — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
BASE = "smollm2-135m-instruct"


def _client(gateway: ServerProcess, tenant: str) -> httpx.Client:
    secret = gateway.create_key(tenant)["secret"]
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_blue_green_management(gateway: ServerProcess) -> None:
    name = f"support-{uuid.uuid4().hex[:6]}"
    with _client(gateway, f"acme-{name}") as acme, _client(gateway, f"globex-{name}") as globex:
        first = acme.put(f"/v1/endpoints/{name}", json={"description": "support bot"})
        assert first.status_code == 200, first.text
        again = acme.put(f"/v1/endpoints/{name}", json={"description": "support bot"})
        assert again.json()["created_at"] == first.json()["created_at"]  # PUT twice = one resource
        refused = acme.put(f"/v1/endpoints/{name}", json={"traffic": {"blue": 100}})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "traffic"

        for deployment, model in (("blue", BASE), ("green", BASE)):
            made = acme.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": model})
            assert made.status_code == 200 and made.json()["state"] == "ready", made.text
        unknown = acme.put(f"/v1/endpoints/{name}/deployments/red", json={"model": "no-such-model"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"

        live = acme.put(f"/v1/endpoints/{name}", json={"traffic": {"blue": 100}, "mirror_traffic": {"green": 20}})
        assert live.status_code == 200, live.text
        assert (live.json()["traffic"], live.json()["mirror_traffic"]) == ({"blue": 100}, {"green": 20})
        for body, param in (({"traffic": {"blue": 90, "green": 20}}, "traffic"),
                            ({"traffic": {"blue": 100}, "mirror_traffic": {"green": 60}}, "mirror_traffic"),
                            ({"traffic": {"blue": 90, "green": 10}, "mirror_traffic": {"green": 10}},
                             "mirror_traffic")):
            bad = acme.put(f"/v1/endpoints/{name}", json=body)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == param, (body, bad.text)
        held = acme.delete(f"/v1/endpoints/{name}/deployments/green")  # mirrored to: still takes traffic
        assert held.status_code == 409

        assert globex.get(f"/v1/endpoints/{name}").status_code == 404
        assert globex.delete(f"/v1/endpoints/{name}/deployments/blue").status_code == 404
        assert globex.put(f"/v1/endpoints/{name}", json={}).status_code == 409  # names are global
        assert name not in [e["name"] for e in globex.get("/v1/endpoints").json()["data"]]

        for split in ({"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}):
            assert acme.put(f"/v1/endpoints/{name}", json={"traffic": split}).status_code == 200
        assert acme.delete(f"/v1/endpoints/{name}/deployments/blue").status_code == 200
        shown = acme.get(f"/v1/endpoints/{name}").json()
        assert [d["name"] for d in shown["deployments"]] == ["green"] and shown["traffic"] == {"green": 100}
        assert acme.delete(f"/v1/endpoints/{name}").status_code == 200
        assert acme.get(f"/v1/endpoints/{name}").status_code == 404


async def test_concurrent_weight_changes_always_sum_to_100(gateway: ServerProcess) -> None:
    name = f"race-{uuid.uuid4().hex[:6]}"
    with _client(gateway, f"race-{name}") as setup:
        setup.put(f"/v1/endpoints/{name}", json={})
        for deployment in ("blue", "green"):
            setup.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": BASE})
        headers = dict(setup.headers)
    splits = [{"blue": 100 - p, "green": p} for p in range(0, 101, 5)]
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as http:
        answers = await asyncio.gather(*(http.put(f"/v1/endpoints/{name}", json={"traffic": {
            k: v for k, v in split.items() if v}}) for split in splits))
        assert {answer.status_code for answer in answers} == {200}
        final = (await http.get(f"/v1/endpoints/{name}")).json()["traffic"]
    assert sum(final.values()) == 100


def test_the_admin_names_the_owner(gateway: ServerProcess) -> None:
    name = f"admin-{uuid.uuid4().hex[:6]}"
    with gateway.admin() as admin:
        missing = admin.put(f"/v1/endpoints/{name}", json={})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "tenant"
        made = admin.put(f"/v1/endpoints/{name}", json={"tenant": "acme-admin-made"})
        assert made.status_code == 200 and made.json()["owner"] == "acme-admin-made"
        assert name in [e["name"] for e in admin.get("/v1/endpoints").json()["data"]]
        bad_name = admin.put("/v1/endpoints/Not_A_Label", json={"tenant": "x"})
        assert bad_name.status_code == 400
