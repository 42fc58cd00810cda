"""Endpoints and deployments, files and batches through the SDK, and lists that follow pages."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

import openai
import pytest

from meterway import BadRequestError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from meterway import Client
    from meterway.sdk import Batch
    from tests.server import ServerProcess

ECHO = "meterway-echo"


def test_endpoint_and_deployment_lifecycle(server: ServerProcess, tenant_client: Client) -> None:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    assert tenant_client.endpoints.put(name, description="sdk").name == name
    blue = tenant_client.endpoints.deployments.put(name, "blue", model=ECHO)
    assert (blue.name, blue.model, blue.state) == ("blue", ECHO, "ready")
    shown = tenant_client.endpoints.put(name, description="sdk", traffic={"blue": 100})
    assert shown.traffic == {"blue": 100} and shown.scoring_uri == f"{server.url}/endpoints/{name}/v1"
    assert name in [e.name for e in tenant_client.endpoints.list()]
    assert tenant_client.endpoints.deployments.get(name, "blue").model == ECHO
    with pytest.raises(BadRequestError) as serverless:
        tenant_client.endpoints.deployments.logs(name, "blue")
    assert serverless.value.code == "not_dedicated"
    keys = tenant_client.endpoints.keys(name)
    renewed = tenant_client.endpoints.regenerate_key(name, "secondary")
    assert renewed["primary_key"] == keys["primary_key"] and renewed["secondary_key"] != keys["secondary_key"]
    reply = openai.OpenAI(base_url=shown.scoring_uri, api_key=renewed["secondary_key"], max_retries=0)
    assert reply.chat.completions.create(model="", max_tokens=2, messages=[{"role": "user", "content": "hi"}]).id
    with pytest.raises(ConflictError):
        tenant_client.endpoints.deployments.delete(name, "blue")  # it takes the traffic
    tenant_client.endpoints.put(name, traffic={})
    assert tenant_client.endpoints.deployments.delete(name, "blue").deleted is True
    assert tenant_client.endpoints.delete(name).deleted is True
    with pytest.raises(NotFoundError):
        tenant_client.endpoints.get(name)


def _lines(count: int) -> bytes:
    return "".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": ECHO, "max_tokens": 2,
                                        "messages": [{"role": "user", "content": f"line {i}"}]}}) + "\n"
                   for i in range(count)).encode()


def _finished(client: Client, batch_id: str) -> Batch:
    deadline = time.monotonic() + 60
    while (batch := client.batches.get(batch_id)).status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    return batch


def test_files_and_batches(tenant_client: Client) -> None:
    uploaded = tenant_client.files.create(_lines(3), purpose="batch", filename="in.jsonl")
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == ("in.jsonl", "batch", len(_lines(3)))
    assert tenant_client.files.get(uploaded.id).id == uploaded.id
    assert tenant_client.files.content(uploaded.id) == _lines(3)
    created = tenant_client.batches.create(input_file_id=uploaded.id, metadata={"run": "sdk"})
    assert (created.input_file_id, created.endpoint, created.metadata) == (
        uploaded.id, "/v1/chat/completions", {"run": "sdk"})
    done = _finished(tenant_client, created.id)
    assert done.status == "completed" and done.request_counts == {"total": 3, "completed": 3, "failed": 0}
    output = [json.loads(line) for line in tenant_client.files.content(str(done.output_file_id)).splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["c0", "c1", "c2"]
    with pytest.raises(ConflictError):
        tenant_client.batches.cancel(created.id)  # a finished job cannot be cancelled
    second = tenant_client.batches.create(input_file_id=uploaded.id)
    assert tenant_client.batches.cancel(second.id).status in ("cancelling", "cancelled", "completed")
    walked = [b.id for b in tenant_client.batches.list(limit=1)]  # one per page: the iterator follows them
    assert walked == [b["id"] for b in tenant_client.get("/v1/batches", params={"limit": 100})["data"]]
    assert sorted(walked) == sorted([second.id, created.id])
    assert tenant_client.files.delete(uploaded.id).deleted is True
    assert uploaded.id not in [f.id for f in tenant_client.files.list(limit=1)]


def test_file_lists_follow_pages(tenant_client: Client) -> None:
    made = [tenant_client.files.create(_lines(1), purpose="batch", filename=f"f{i}.jsonl").id for i in range(3)]
    assert sorted(f.id for f in tenant_client.files.list(limit=1)) == sorted(made)
    assert sorted(f.id for f in tenant_client.files.list(limit=2, purpose="batch")) == sorted(made)


def test_audit_log_follows_pages(admin: Client, tenant: str) -> None:
    made = [admin.keys.create(tenant=tenant, name=f"k{i}").id for i in range(3)]
    entries = list(admin.audit.list(tenant=tenant, action="key.create", limit=2))
    assert [e.target for e in entries] == made[::-1]  # newest first, across two pages
    assert {e.action for e in entries} == {"key.create"}
