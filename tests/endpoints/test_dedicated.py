"""Dedicated deployments end to end: instances of their own that load at once and stay, refused when they do not
fit or cannot be billed, autoscaled with a cool-down, their workers' logs, and instance-minutes in the ledger
beside tokens — through the real gateway, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from tests.billing.stripe_server import StripeServer
from tests.endpoints.helpers import ECHO, MESSAGES, tenant_client
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow
SMOLLM, SMOLLM_BF16 = "smollm2-135m-instruct", "smollm2-135m-instruct-bf16"
PER_MINUTE = "0.25"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # 1000 MB: one bf16 SmolLM instance (about 430 MB) fits twice, the fp32 one (about 770 MB) once.
    env = {"METERWAY_POOL_MEMORY_BUDGET_MB": "1000"}
    if request.param == "postgresql":
        env["METERWAY_DATABASE_URL"] = request.getfixturevalue("module_pg_url")
    process = ServerProcess(home=tmp_path_factory.mktemp("dedicated"), store=store_dir, env=env).start()
    with process.admin() as admin:
        for model in (ECHO, SMOLLM, SMOLLM_BF16):
            made = admin.post("/v1/prices/instances", json={"model": model, "instance_type": "cpu",
                                                            "per_minute": PER_MINUTE})
            assert made.status_code == 201, made.text
    yield process
    process.stop()


def until(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)
    return found


def endpoint(manager: httpx.Client, deployment: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    assert manager.put(f"/v1/endpoints/{name}", json={}).status_code == 200
    made = manager.put(f"/v1/endpoints/{name}/deployments/blue", json=deployment)
    assert made.status_code == 200, made.text
    assert manager.put(f"/v1/endpoints/{name}", json={"traffic": {"blue": 100}}).status_code == 200
    return name, made.json()


def ready(manager: httpx.Client, name: str, count: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        body = manager.get(f"/v1/endpoints/{name}/deployments/blue").json()
        states = [i["state"] for i in body["instances"]]
        return body if body["state"] == "ready" and states == ["ready"] * count else None
    return check


def test_instances_load_at_once_serve_and_are_billed_per_minute(gateway: ServerProcess) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    with tenant_client(gateway, tenant) as acme:
        name, made = endpoint(acme, {"model": ECHO, "capacity": "dedicated", "instance_count": 2})
        assert made["state"] in ("creating", "ready") and made["desired_instances"] == 2
        assert (made["instance_type"], made["instance_count"]) == ("cpu", 2)
        shown = until(ready(acme, name, 2), "two ready instances")
        assert shown["scaling_events"][0]["to"] == 2

        secret = acme.post(f"/v1/endpoints/{name}/keys").json()["primary_key"]
        client = openai.OpenAI(base_url=f"{gateway.url}/endpoints/{name}/v1", api_key=secret, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="", messages=MESSAGES, max_tokens=3)
        assert raw.headers["x-meterway-deployment"] == "blue" and raw.parse().usage.completion_tokens == 3

        logs = acme.get(f"/v1/endpoints/{name}/deployments/blue/logs", params={"lines": 50}).json()["data"]
        assert any(f"[{name}/blue#0] instance added" in line for line in logs)
        assert any(f"[{name}/blue#1] model ready" in line for line in logs)
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert f'meterway_deployment_instances{{deployment="blue",endpoint="{name}"}} 2.0' in metrics

        # Each instance's first minute is billed as soon as it holds its memory; the tokens beside them.
        def billed() -> dict[str, Any] | None:
            report = acme.get("/v1/usage", params={"group_by": "endpoint,meter"}).json()
            lines = {line["meter"]: line for line in report["data"] if line["endpoint"] == name}
            done = "instance_minutes" in lines and "tokens" in lines
            return lines if done and lines["instance_minutes"]["instance_minutes"] >= 2 else None

        lines = until(billed, "two instance-minutes and the call's tokens in the ledger")
        minutes = lines["instance_minutes"]
        assert minutes["requests"] == 0 and minutes["total_tokens"] == 0
        assert Decimal(minutes["cost"]) == minutes["instance_minutes"] * Decimal(PER_MINUTE)
        assert lines["tokens"]["requests"] == 1 and lines["tokens"]["completion_tokens"] == 3

        # Back to the shared pool: the instances go, and their billing stops with them.
        moved = acme.put(f"/v1/endpoints/{name}/deployments/blue", json={"model": ECHO})
        assert moved.status_code == 200 and moved.json()["state"] == "ready" and "instances" not in moved.json()
        released = f'meterway_deployment_instances{{deployment="blue",endpoint="{name}"}} 0.0'
        until(lambda: released in httpx.get(f"{gateway.url}/metrics").text, "the instances released")
        served = client.chat.completions.create(model="", messages=MESSAGES, max_tokens=2)
        assert served.usage is not None and served.usage.completion_tokens == 2
        stopped = until(lambda: _stopped(acme, name, 2), "both instances stopped")
        assert all(line.count("instance stopped") == 1 for line in stopped)
    _reconciled_with_stripe(gateway, tenant, minutes=2)  # each ran less than a minute: one minute each


def _stopped(manager: httpx.Client, name: str, count: int) -> list[str] | None:
    logs = manager.get(f"/v1/endpoints/{name}/deployments/blue/logs").json()["data"]
    stops = [line for line in logs if "instance stopped" in line]
    return stops if len(stops) == count else None


def _reconciled_with_stripe(gateway: ServerProcess, tenant: str, minutes: int) -> None:
    """Export the ledger to a local Stripe (the real SDK) with the billing CLI; both meters reconcile."""
    stripe = StripeServer().start()
    env = {**os.environ, "METERWAY_HOME": str(gateway.home), "METERWAY_NATS_URL": "", **gateway.env,
           "METERWAY_STRIPE_API_KEY": stripe.api_key, "METERWAY_STRIPE_API_BASE": stripe.url}

    def meterway(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "service.cli", "billing", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        customer = f"cus_{tenant}"
        meterway("link-stripe", "--tenant", tenant, "--customer", customer)
        meterway("export-stripe")
        lines = {line["tenant"]: line for line in json.loads(meterway("reconcile"))["data"]}
        assert lines[tenant]["balanced"] and lines[tenant]["ledger_instance_minutes"] == minutes
        assert stripe.store.totals("meterway_instance_minutes") == {customer: minutes}
        assert stripe.store.totals("meterway_tokens")[customer] == lines[tenant]["ledger_tokens"] > 0
    finally:
        stripe.stop()


def test_what_cannot_be_had_is_refused_naming_the_field(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        name = f"ep-{uuid.uuid4().hex[:8]}"
        assert acme.put(f"/v1/endpoints/{name}", json={}).status_code == 200
        url = f"/v1/endpoints/{name}/deployments/blue"
        cases = [
            ({"model": ECHO, "instance_count": 2}, 400, "instance_count"),  # serverless takes no instances
            ({"model": ECHO, "capacity": "dedicated"}, 400, "instance_count"),
            ({"model": ECHO, "capacity": "dedicated", "instance_count": 1, "min_instances": 1}, 400,
             "instance_count"),
            ({"model": ECHO, "capacity": "dedicated", "min_instances": 3, "max_instances": 2}, 400,
             "min_instances"),
            ({"model": ECHO, "capacity": "dedicated", "instance_count": 1, "cooldown_s": 5}, 400, "cooldown_s"),
            ({"model": ECHO, "capacity": "dedicated", "instance_count": 1, "instance_type": "gpu"}, 400,
             "instance_type"),
            ({"model": "all-minilm-l6-v2", "capacity": "dedicated", "instance_count": 1}, 400, "instance_type"),
            ({"model": SMOLLM, "capacity": "dedicated", "instance_count": 2}, 409, "instance_count"),
        ]
        for body, status, param in cases:
            refused = acme.put(url, json=body)
            assert (refused.status_code, refused.json()["error"]["param"]) == (status, param), (body, refused.text)
        no_price = acme.put(url, json=cases[6][0]).json()["error"]
        assert no_price["code"] == "no_price" and "per instance-minute" in no_price["message"]
        too_big = acme.put(url, json=cases[7][0]).json()["error"]
        assert too_big["code"] == "insufficient_capacity" and "memory budget is 1000 MB" in too_big["message"]
        assert acme.get(url).status_code == 404  # nothing refused was created


def test_autoscaling_follows_the_load_with_a_cool_down(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        name, _ = endpoint(acme, {"model": SMOLLM_BF16, "capacity": "dedicated", "min_instances": 1,
                                  "max_instances": 2, "target_concurrency": 1, "cooldown_s": 3})
        until(ready(acme, name, 1), "the first instance")
        secret = acme.post(f"/v1/endpoints/{name}/keys").json()["primary_key"]
        client = openai.OpenAI(base_url=f"{gateway.url}/endpoints/{name}/v1", api_key=secret, max_retries=0)
        streams = [client.chat.completions.create(model="", messages=MESSAGES, max_tokens=48, stream=True)
                   for _ in range(3)]
        scaled_out = until(lambda: _event(acme, name, 2), "a scale-out to 2 under load", timeout=60)
        assert scaled_out["from"] == 1 and scaled_out["reason"] == "load"
        for stream in streams:
            assert sum(1 for _ in stream) > 1  # every stream ran to its end
        scaled_in = until(lambda: _event(acme, name, 1), "a scale-in after the cool-down", timeout=60)
        assert scaled_in["from"] == 2 and scaled_in["at"] >= scaled_out["at"] + 3
        metrics = httpx.get(f"{gateway.url}/metrics").text
        for direction in ("out", "in"):
            assert (f'meterway_deployment_scaling_events_total{{deployment="blue",direction="{direction}",'
                    f'endpoint="{name}"}}') in metrics
        logs = acme.get(f"/v1/endpoints/{name}/deployments/blue/logs").json()["data"]
        assert any("model loaded" in line and f"[{name}/blue#0]" in line for line in logs)  # the worker's own
        assert any(f"[{name}/blue#1] instance added" in line for line in logs)
        assert any(f"[{name}/blue#1] instance stopped" in line for line in logs)
        serverless = acme.put(f"/v1/endpoints/{name}/deployments/green", json={"model": ECHO})
        assert acme.get(f"/v1/endpoints/{name}/deployments/green/logs").status_code == 400, serverless.text


def _event(manager: httpx.Client, name: str, to: int) -> dict[str, Any] | None:
    body = manager.get(f"/v1/endpoints/{name}/deployments/blue").json()
    return next((e for e in body["scaling_events"] if e["to"] == to and e["from"] != 0), None)
