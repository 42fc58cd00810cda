"""``meterway endpoints apply|invoke``: YAML specs shaped like Azure ML's applied to a real server (twice: the
same resources), refused keys named, a call pinned to a deployment — and the same commands with ``--local``,
on the embedded default app and no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from service.cli import main
from tests.endpoints.helpers import ECHO, MESSAGES
from tests.server import ADMIN_KEY, REPO, ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

pytestmark = pytest.mark.slow
SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"


@pytest.fixture(scope="module")
def gateway(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(home=tmp_path_factory.mktemp("cli"), store=store_dir).start()
    yield process
    process.stop()


@pytest.fixture
def tenant(gateway: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """The CLI talks to ``gateway`` with a fresh tenant's key; the client returned checks what it did."""
    secret = str(gateway.create_key(f"acme-{uuid.uuid4().hex[:6]}")["secret"])
    monkeypatch.setenv("METERWAY_URL", gateway.url)
    monkeypatch.setenv("METERWAY_API_KEY", secret)
    import httpx

    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        yield client


def write(path: Path, *documents: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def endpoint_spec(name: str, **fields: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA, "name": name, "auth_mode": "key", **fields}


def deployment_spec(endpoint: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA, "name": name, "endpoint_name": endpoint, "model": ECHO, **fields}


def test_apply_twice_is_the_same_endpoint(tenant: httpx.Client, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    name = f"support-{uuid.uuid4().hex[:6]}"
    files = ["-f", write(tmp_path / "endpoint.yaml", endpoint_spec(name, traffic={"blue": 100})),
             "-f", write(tmp_path / "blue.yaml", deployment_spec(name, "blue"))]
    main(["endpoints", "apply", *files])
    out = capsys.readouterr().out
    assert f"deployment {name}/blue: ready" in out and f"/endpoints/{name}/v1" in out
    first = tenant.get(f"/v1/endpoints/{name}").json()
    assert first["traffic"] == {"blue": 100}
    assert [(d["name"], d["model"]) for d in first["deployments"]] == [("blue", ECHO)]

    main(["endpoints", "apply", *files])
    again = tenant.get(f"/v1/endpoints/{name}").json()
    assert (again["created_at"], again["deployments"][0]["created_at"]) == (
        first["created_at"], first["deployments"][0]["created_at"])
    # A spec that leaves the weights out keeps them (a PUT alone would clear them).
    main(["endpoints", "apply", "-f", write(tmp_path / "bare.yaml", endpoint_spec(name, description="docs"))])
    kept = tenant.get(f"/v1/endpoints/{name}").json()
    assert (kept["traffic"], kept["description"]) == ({"blue": 100}, "docs")


def test_a_key_nobody_takes_stops_apply(gateway: ServerProcess, tenant: httpx.Client, tmp_path: Path) -> None:
    name = f"support-{uuid.uuid4().hex[:6]}"
    typo = write(tmp_path / "typo.yaml", endpoint_spec(name), deployment_spec(name, "blue", sku="Standard_DS3"))
    with pytest.raises(SystemExit) as unknown:
        main(["endpoints", "apply", "-f", typo])
    assert "typo.yaml" in str(unknown.value.code) and "'sku'" in str(unknown.value.code)
    assert tenant.get(f"/v1/endpoints/{name}").status_code == 404  # checked before any request

    # Instances make a dedicated deployment; the server answers for it (this model has no instance price yet).
    scaled = write(tmp_path / "scaled.yaml", endpoint_spec(name), deployment_spec(name, "blue", instance_count=2))
    with pytest.raises(SystemExit) as refused:
        main(["endpoints", "apply", "-f", scaled])
    assert str(refused.value.code).startswith("meterway: 400") and "per instance-minute" in str(refused.value.code)
    with gateway.admin() as admin:
        priced = admin.post("/v1/prices/instances", json={"model": ECHO, "instance_type": "cpu", "per_minute": "0.1"})
        assert priced.status_code == 201, priced.text
    main(["endpoints", "apply", "-f", scaled])
    shown = tenant.get(f"/v1/endpoints/{name}/deployments/blue").json()
    assert (shown["capacity"], shown["instance_count"], shown["instance_type"]) == ("dedicated", 2, "cpu")
    assert shown["state"] in ("creating", "ready") and shown["desired_instances"] == 2


def test_invoke_pins_a_deployment(tenant: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"support-{uuid.uuid4().hex[:6]}"
    spec = write(tmp_path / "endpoint.yaml", endpoint_spec(name, traffic={"blue": 100}),
                 deployment_spec(name, "blue"), deployment_spec(name, "green"))
    main(["endpoints", "apply", "-f", spec])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": MESSAGES, "max_tokens": 2}))
    capsys.readouterr()

    main(["endpoints", "invoke", name, "--request-file", str(request), "--deployment", "green"])
    captured = capsys.readouterr()
    assert captured.err.strip() == "deployment: green"
    completion = json.loads(captured.out)
    assert completion["model"] == ECHO and completion["choices"][0]["message"]["content"]
    main(["endpoints", "invoke", name, "--request-file", str(request)])
    assert capsys.readouterr().err.strip() == "deployment: blue"


def test_local_apply_and_invoke_need_no_server(store_dir: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("METERWAY_URL", "METERWAY_API_KEY")}
    env.update(METERWAY_HOME=str(tmp_path / "home"), METERWAY_STORE=str(store_dir), METERWAY_ADMIN_KEY=ADMIN_KEY,
               METERWAY_ENABLE_TEST_MODEL="1", METERWAY_POOL_STANDBY="0")
    spec = write(tmp_path / "endpoint.yaml", endpoint_spec("support", traffic={"blue": 100}),
                 deployment_spec("support", "blue"))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"messages": MESSAGES, "max_tokens": 2}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", "endpoints", *args, "--local"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=180, check=True)

    assert "deployment support/blue: ready" in cli("apply", "-f", spec).stdout
    answer = cli("invoke", "support", "--request-file", str(request))
    assert json.loads(answer.stdout)["model"] == ECHO  # stdout holds the answer alone; the app logs to stderr
    assert "deployment: blue" in answer.stderr
    assert json.loads(cli("get", "support").stdout)["owner"] == "local"
