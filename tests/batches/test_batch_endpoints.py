"""Batch endpoints as a tenant uses them: an endpoint of kind ``batch``, invoked with the official openai client
at its ``scoring_uri`` with its own key; jobs run on the default deployment of the moment they are created."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from tests.batches.test_batches import chat_line, results, submit, wait
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"


@pytest.fixture(scope="module")
def gateway(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(home=tmp_path_factory.mktemp("batch-endpoints"), store=store_dir).start()
    yield process
    process.stop()


def _tenant(gateway: ServerProcess) -> httpx.Client:
    secret = gateway.create_key(f"acme-{uuid.uuid4().hex[:6]}")["secret"]
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return dict(response.json())


def _billed_by_deployment(http: httpx.Client, expected: dict[str, int]) -> dict[str, int]:
    deadline, found = time.monotonic() + 60, {}
    while found != expected and time.monotonic() < deadline:
        data = _ok(http.get("/v1/usage", params={"group_by": "endpoint,deployment"}))["data"]
        found = {f"{row['endpoint']}/{row['deployment']}": row["requests"] for row in data}
        time.sleep(0.3)
    return found


def test_a_batch_endpoint_runs_jobs_on_its_default_deployment(gateway: ServerProcess, tmp_path: Path) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    with _tenant(gateway) as http:
        created = _ok(http.put(f"/v1/endpoints/{name}", json={"kind": "batch"}))
        assert (created["kind"], created["default_deployment"]) == ("batch", None)
        _ok(http.put(f"/v1/endpoints/{name}/deployments/v1", json={"model": ECHO}))
        endpoint = _ok(http.get(f"/v1/endpoints/{name}"))
        assert endpoint["default_deployment"] == "v1"  # its first deployment
        key = _ok(http.post(f"/v1/endpoints/{name}/keys"))["primary_key"]
        ai = openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)

        first = submit(ai, tmp_path, [chat_line(f"req-{n}") for n in range(5)])
        assert (first.model_extra or {})["deployment"] == "v1"
        done = wait(ai, first.id, ("completed",))
        assert sorted(line["custom_id"] for line in results(ai, done.output_file_id)) == [f"req-{n}" for n in range(5)]

        _ok(http.put(f"/v1/endpoints/{name}/deployments/v2", json={"model": ECHO}))
        _ok(http.put(f"/v1/endpoints/{name}", json={"kind": "batch", "default_deployment": "v2"}))
        time.sleep(1.5)  # every replica's routes hold the new default within a second
        second = submit(ai, tmp_path, [chat_line(f"req-{n}") for n in range(3)])
        assert (second.model_extra or {})["deployment"] == "v2"  # new jobs only: the first stays on v1
        wait(ai, second.id, ("completed",))
        assert _billed_by_deployment(http, {f"{name}/v1": 5, f"{name}/v2": 3}) == {f"{name}/v1": 5, f"{name}/v2": 3}

        assert [b.id for b in ai.batches.list().data] == [second.id, first.id]  # the endpoint's jobs
        refused = http.delete(f"/v1/endpoints/{name}/deployments/v2")
        assert refused.status_code == 409 and refused.json()["error"]["param"] == "deployment"


def test_what_a_batch_endpoint_refuses(gateway: ServerProcess, tmp_path: Path) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    with _tenant(gateway) as http:
        endpoint = _ok(http.put(f"/v1/endpoints/{name}", json={"kind": "batch"}))
        key = _ok(http.post(f"/v1/endpoints/{name}/keys"))["primary_key"]
        ai = openai.OpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)
        with pytest.raises(openai.ConflictError):  # no deployment yet: nowhere to run a job
            submit(ai, tmp_path, [chat_line("a")])
        _ok(http.put(f"/v1/endpoints/{name}/deployments/v1", json={"model": ECHO}))
        with pytest.raises(openai.BadRequestError) as online:  # it is invoked with jobs, not requests
            ai.chat.completions.create(model=ECHO, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert online.value.param == "endpoint"
        for body, param in (({"kind": "batch", "traffic": {"v1": 100}}, "traffic"),
                            ({"kind": "online"}, "kind"),
                            ({"kind": "batch", "default_deployment": "nope"}, "default_deployment")):
            response = http.put(f"/v1/endpoints/{name}", json=body)
            assert (response.status_code, response.json()["error"]["param"]) == (400, param), body
        elsewhere = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):  # an endpoint key calls its own endpoint only
            elsewhere.batches.list()
