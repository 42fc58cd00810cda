"""Mirrored traffic: copies run on the mirror deployment, are metered but never billed, never returned, never
fail the primary (even when the mirror's worker is killed), and are dropped and counted when the mirror
deployment is overloaded. Then the blue-green story's traffic shift under load, with no request lost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import httpx
import openai
import psutil
import pytest

from tests.api.ledger import ledger_rows
from tests.endpoints.helpers import ECHO, MESSAGES, make_endpoint, tenant_client
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow
SMOLLM, SMOLLM_BF16 = "smollm2-135m-instruct", "smollm2-135m-instruct-bf16"  # two models: two workers


@pytest.fixture(scope="module")
def gateway(store_dir: Path, module_pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"METERWAY_DATABASE_URL": module_pg_url, "METERWAY_MIRROR_MAX_INFLIGHT": "2"}
    process = ServerProcess(home=tmp_path_factory.mktemp("mirror"), store=store_dir, env=env).start()
    yield process
    process.stop()


def mirror_counts(gateway: ServerProcess) -> Counter[str]:
    text = httpx.get(f"{gateway.url}/metrics").text
    found = re.finditer(r'meterway_mirror_requests_total\{outcome="(\w+)"\} (\S+)', text)
    return Counter({m[1]: int(float(m[2])) for m in found})


def worker_pids(gateway: ServerProcess) -> set[int]:
    assert gateway.process is not None
    children = psutil.Process(gateway.process.pid).children(recursive=True)
    return {c.pid for c in children if "models.pool.worker" in " ".join(c.cmdline())}


@pytest.mark.battery(16)
async def test_mirror_is_metered_unbilled_and_never_touches_the_primary(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": SMOLLM, "green": SMOLLM_BF16}, traffic={"blue": 100},
                                 mirror_traffic={"green": 50})
        key = acme.headers["authorization"].removeprefix("Bearer ")
        client = openai.AsyncOpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)

        async def call(**headers: str) -> tuple[str, str]:
            raw = await client.chat.completions.with_raw_response.create(
                model="", messages=MESSAGES, max_tokens=2, extra_headers=headers)
            return raw.headers["x-meterway-deployment"], raw.parse().id

        await call(**{"x-meterway-deployment": "blue"})  # load each deployment's worker, one after the other
        blue_worker = worker_pids(gateway)
        await call(**{"azureml-model-deployment": "green"})
        green_worker = worker_pids(gateway) - blue_worker
        before = mirror_counts(gateway)

        answers = [await call() for _ in range(40)]
        assert {deployment for deployment, _ in answers} == {"blue"}  # a copy's answer is never returned
        await _until(lambda: _settled(gateway, before))
        counts = mirror_counts(gateway) - before
        assert 5 <= counts.total() <= 35, counts  # 20 copies expected; ±4.7 standard deviations
        ids = [completion_id for _, completion_id in answers]
        mirrored = [f"{rid}-mirror" for rid in ids]
        rows = (await ledger_rows(gateway, ids))["all"]
        copies = [r for r in rows if r["request_id"] in set(mirrored)]
        assert len(copies) == counts["completed"] > 0
        assert {(r["deployment"], r["model"], r["billable"]) for r in copies} == {("green", SMOLLM_BF16, False)}

        billed = acme.get("/v1/usage", params={"group_by": "deployment"}).json()["data"]
        assert {line["deployment"]: line["requests"] for line in billed} == {"blue": 41, "green": 1}  # pinned
        shown = acme.get("/v1/usage", params={"group_by": "deployment,billable"}).json()["data"]
        unbilled = [(line["deployment"], line["requests"], line["cost"]) for line in shown
                    if line["billable"] == "false"]
        assert unbilled == [("green", len(copies), "0")]

        before = mirror_counts(gateway)
        storm = await asyncio.gather(*(call() for _ in range(24)))  # the mirror runs 2 copies at a time
        assert [deployment for deployment, _ in storm] == ["blue"] * 24
        await _until(lambda: (mirror_counts(gateway) - before)["dropped"] > 0)

        async def kill_green_worker() -> None:
            await asyncio.sleep(0.3)
            for pid in green_worker:
                os.kill(pid, signal.SIGKILL)

        killer = asyncio.create_task(kill_green_worker())
        survivors = [await call() for _ in range(30)]  # the mirror's worker dies under them
        await killer
        assert [deployment for deployment, _ in survivors] == ["blue"] * 30
        assert blue_worker <= worker_pids(gateway)


def _settled(gateway: ServerProcess, before: Counter[str]) -> bool:
    """The copies sampled so far have ended (none in flight): the totals stop moving."""
    first = mirror_counts(gateway) - before
    time.sleep(0.5)
    return first == mirror_counts(gateway) - before


async def _until(condition: object, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def test_traffic_shift_under_load_loses_no_request(gateway: ServerProcess) -> None:
    with tenant_client(gateway, f"acme-{uuid.uuid4().hex[:6]}") as acme:
        endpoint = make_endpoint(acme, {"blue": ECHO, "green": ECHO}, traffic={"blue": 100})
        key = acme.headers["authorization"].removeprefix("Bearer ")
        client = openai.AsyncOpenAI(base_url=endpoint["scoring_uri"], api_key=key, max_retries=0)
        served: list[str] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def stream_forever() -> None:
            while not stop.is_set():
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="", messages=MESSAGES, max_tokens=4, stream=True)
                    chunks = [chunk async for chunk in raw.parse()]
                    assert chunks, "an empty stream"
                    served.append(raw.headers["x-meterway-deployment"])
                except Exception as exc:  # counted: the test asserts there are none
                    failures.append(exc)

        streams = [asyncio.create_task(stream_forever()) for _ in range(8)]
        for split in ({"blue": 90, "green": 10}, {"blue": 50, "green": 50}, {"green": 100}):
            await asyncio.sleep(0.5)
            assert acme.put(f"/v1/endpoints/{endpoint['name']}", json={"traffic": split}).status_code == 200
        await asyncio.sleep(0.3)
        shifted = len(served)
        assert acme.delete(f"/v1/endpoints/{endpoint['name']}/deployments/blue").status_code == 200
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*streams)
    assert failures == []
    assert {"blue", "green"} <= set(served[:shifted])
    assert set(served[shifted + 8:]) == {"green"}  # once the new weights hold, only green serves
