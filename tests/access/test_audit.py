"""The audit log against a real gateway: every management action with its actor, source address and request
id, before → after of a traffic change and of limits; newest first, paged, filtered; another tenant's log
unseen; no route and no SQL statement changes an entry — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.access.conftest import keyed
from tests.api.ledger import database_url

if TYPE_CHECKING:
    from pathlib import Path

    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"


def _entries(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = http.get("/v1/audit", params={"limit": 100, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def _upload(http: httpx.Client, tmp_path: Path, lines: int) -> str:
    path = tmp_path / f"in-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": ECHO, "max_tokens": 1,
                                                 "messages": [{"role": "user", "content": "x"}]}}) + "\n"
                            for n in range(lines)))
    with path.open("rb") as handle:
        answer = http.post("/v1/files", files={"file": (path.name, handle)}, data={"purpose": "batch"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def _endpoint_changes(owner: httpx.Client, name: str) -> None:
    """endpoint.put (new, then traffic moved), deployment.put twice and delete, a key regenerated."""
    assert owner.put(f"/v1/endpoints/{name}", json={}).status_code == 200
    for deployment in ("blue", "green"):
        assert owner.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": ECHO}).status_code == 200
    for traffic in ({"blue": 100}, {"blue": 50, "green": 50}, {"blue": 100}):
        assert owner.put(f"/v1/endpoints/{name}", json={"traffic": traffic}).status_code == 200
    assert owner.delete(f"/v1/endpoints/{name}/deployments/green").status_code == 200
    assert owner.post(f"/v1/endpoints/{name}/keys/regenerate", json={"key_type": "secondary"}).status_code == 200


def _file_and_batch_changes(owner: httpx.Client, tmp_path: Path) -> None:
    """file.upload twice, batch.create and batch.cancel, file.delete."""
    file_id = _upload(owner, tmp_path, 400)  # enough lines that the cancel comes before the last
    batch = owner.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"})
    assert batch.status_code == 200, batch.text
    assert owner.post(f"/v1/batches/{batch.json()['id']}/cancel").status_code == 200
    assert owner.delete(f"/v1/files/{_upload(owner, tmp_path, 1)}").status_code == 200


def _admin_changes(gateway: ServerProcess, tenant: str, key_id: str, model: str) -> None:
    """key.update and tenant.update (limits before → after), price.create and instance_price.create."""
    with gateway.admin() as admin:
        assert admin.patch(f"/v1/keys/{key_id}", json={"rpm": 100, "role": "owner"}).status_code == 200
        assert admin.patch(f"/v1/tenants/{tenant}", json={"tpm": 5000}).status_code == 200
        assert admin.post("/v1/prices", json={"model": model, "input_per_million": "1",
                                              "output_per_million": "2"}).status_code == 201
        assert admin.post("/v1/prices/instances", json={"model": model, "instance_type": "cpu",
                                                        "per_minute": "0.01"}).status_code == 201


def test_every_management_action_is_in_the_audit_log(gateway: ServerProcess, tmp_path: Path) -> None:
    tenant, name, model = f"acme-{uuid.uuid4().hex[:8]}", f"ep-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    owner_key = gateway.create_key(tenant, name="owner")
    spare = gateway.create_key(tenant, name="spare")
    _admin_changes(gateway, tenant, str(owner_key["id"]), model)
    headers = {"Authorization": f"Bearer {owner_key['secret']}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as owner:
        _endpoint_changes(owner, name)
        _file_and_batch_changes(owner, tmp_path)
        assert owner.post(f"/v1/keys/{spare['id']}/rotate").status_code == 201
        assert owner.delete(f"/v1/keys/{spare['id']}").status_code == 200
        assert owner.delete(f"/v1/endpoints/{name}").status_code == 200
        seen = _entries(owner)
    assert {e["action"] for e in seen} == {
        "key.create", "key.update", "tenant.update", "endpoint.put", "deployment.put", "deployment.delete",
        "endpoint_key.regenerate", "file.upload", "batch.create", "batch.cancel", "file.delete", "key.rotate",
        "key.revoke", "endpoint.delete"}
    assert {e["tenant"] for e in seen} == {tenant} and {e["source"] for e in seen} == {"127.0.0.1"}
    assert all(e["request_id"] for e in seen)
    assert {e["actor"] for e in seen if e["action"] in ("key.create", "key.update", "tenant.update")} == {"admin"}
    assert {e["actor"] for e in seen if e["action"].startswith(("endpoint", "batch", "file"))} == {owner_key["id"]}
    moves = [(e["before"]["traffic"], e["after"]["traffic"]) for e in seen if e["action"] == "endpoint.put"
             and e["before"] is not None]
    assert moves[::-1] == [({}, {"blue": 100}), ({"blue": 100}, {"blue": 50, "green": 50}),
                           ({"blue": 50, "green": 50}, {"blue": 100})]  # newest first in the log
    limits = next(e for e in seen if e["action"] == "key.update")
    assert (limits["before"]["rpm"], limits["after"]["rpm"]) == (None, 100)
    tenant_limits = next(e for e in seen if e["action"] == "tenant.update")
    assert tenant_limits["after"]["tpm"] == 5000
    with gateway.admin() as admin:
        assert [e["id"] for e in _entries(admin, tenant=tenant)] == [e["id"] for e in seen]
        prices = [e for e in _entries(admin, action="price.create") if e["target"].startswith(model)]
        instance = [e for e in _entries(admin, action="instance_price.create") if e["target"].startswith(model)]
    assert len(prices) == len(instance) == 1 and prices[0]["tenant"] is None and prices[0]["actor"] == "admin"


def test_the_log_pages_newest_first_and_filters_by_action(gateway: ServerProcess) -> None:
    tenant = f"pages-{uuid.uuid4().hex[:8]}"
    with keyed(gateway, tenant) as owner:
        for n in range(5):
            assert owner.put(f"/v1/endpoints/pg-{n}-{uuid.uuid4().hex[:6]}", json={}).status_code == 200
        first = owner.get("/v1/audit", params={"limit": 2, "action": "endpoint.put"}).json()
        second = owner.get("/v1/audit", params={"limit": 2, "action": "endpoint.put",
                                                "after": first["last_id"]}).json()
        everything = _entries(owner, action="endpoint.put")
    assert first["has_more"] and len(first["data"]) == len(second["data"]) == 2
    assert [e["id"] for e in everything][:4] == [e["id"] for e in first["data"] + second["data"]]
    numbers = [int(e["id"].removeprefix("audit_")) for e in everything]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 5


def test_another_tenants_log_is_not_visible(gateway: ServerProcess) -> None:
    mine, theirs = f"mine-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    with keyed(gateway, mine) as owner, keyed(gateway, theirs) as other:
        assert owner.put(f"/v1/endpoints/ep-{uuid.uuid4().hex[:6]}", json={}).status_code == 200
        assert {e["tenant"] for e in _entries(other)} <= {theirs}
        assert other.get("/v1/audit", params={"tenant": mine}).status_code == 404
        assert _entries(owner)
    for role in ("developer", "finance", "reader", "invoker"):
        with keyed(gateway, mine, role=role) as limited:
            assert limited.get("/v1/audit").status_code == 403


async def test_no_route_or_statement_changes_an_entry(gateway: ServerProcess) -> None:
    with keyed(gateway, f"fixed-{uuid.uuid4().hex[:8]}") as owner:
        assert owner.put(f"/v1/endpoints/ep-{uuid.uuid4().hex[:6]}", json={}).status_code == 200
        entry = _entries(owner)[0]["id"]
        for method in ("DELETE", "PATCH", "PUT", "POST"):
            assert owner.request(method, "/v1/audit").status_code in (404, 405)
            assert owner.request(method, f"/v1/audit/{entry}").status_code in (404, 405)
    engine = create_async_engine(database_url(gateway))
    try:
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as connection:
                    await connection.execute(text(statement))
    finally:
        await engine.dispose()
