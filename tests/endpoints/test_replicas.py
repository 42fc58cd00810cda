"""Two gateway replicas on one PostgreSQL database, both changing an endpoint's traffic and its deployments'
limits while callers go through both: traffic always sums to 100, and once a deployment is deleted no request
sent afterwards is routed to it (battery row 18)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from tests.battery import scaled
from tests.endpoints.helpers import ECHO, MESSAGES
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.battery import Figures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicas(store_dir: Path, module_pg_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {"METERWAY_DATABASE_URL": module_pg_url, "METERWAY_KEY_PEPPER": uuid.uuid4().hex}  # one platform
    first = ServerProcess(home=tmp_path_factory.mktemp("replica-a"), store=store_dir, env=env).start()
    second = ServerProcess(home=tmp_path_factory.mktemp("replica-b"), store=store_dir, env=env).start()
    yield first, second
    first.stop()
    second.stop()


def _manager(gateway: ServerProcess, secret: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


@pytest.mark.battery(18)
def test_two_replicas_change_traffic_and_limits_at_once(replicas: tuple[ServerProcess, ServerProcess],
                                                        figures: Figures) -> None:
    a, b = replicas
    secret = str(a.create_key(f"acme-{uuid.uuid4().hex[:6]}")["secret"])
    name = f"support-{uuid.uuid4().hex[:6]}"
    managers = [_manager(a, secret), _manager(b, secret)]
    first = managers[0]
    assert first.put(f"/v1/endpoints/{name}", json={}).status_code == 200
    for deployment in ("blue", "green"):
        assert first.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": ECHO}).status_code == 200
    assert first.put(f"/v1/endpoints/{name}", json={"traffic": {"blue": 50, "green": 50}}).status_code == 200

    rounds = int(scaled(30, 300))
    sums: list[int] = []
    answers: list[tuple[float, str]] = []  # (when the request was sent, the deployment that answered)
    failures: list[str] = []
    stop = threading.Event()

    def change(manager: httpx.Client, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(rounds):
            blue = rng.randrange(0, 101)
            weights = manager.put(f"/v1/endpoints/{name}", json={"traffic": {"blue": blue, "green": 100 - blue}})
            limits = manager.put(f"/v1/endpoints/{name}/deployments/{rng.choice(['blue', 'green'])}",
                                 json={"model": ECHO, "rpm": rng.randrange(100_000, 200_000)})
            if weights.status_code != 200 or limits.status_code != 200:
                failures.append(f"{weights.status_code} {limits.status_code}")
            for reader in managers:
                sums.append(sum(reader.get(f"/v1/endpoints/{name}").json()["traffic"].values()))

    def call(gateway: ServerProcess) -> None:
        client = openai.OpenAI(base_url=f"{gateway.url}/endpoints/{name}/v1", api_key=secret, max_retries=0)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                raw = client.chat.completions.with_raw_response.create(model="", messages=MESSAGES, max_tokens=1)
                answers.append((sent, raw.headers["x-meterway-deployment"]))
            except openai.APIError as exc:
                failures.append(f"call: {exc}")

    callers = [threading.Thread(target=call, args=(g,)) for g in (a, b)]
    changers = [threading.Thread(target=change, args=(m, seed)) for seed, m in enumerate(managers)]
    for thread in (*callers, *changers):
        thread.start()
    for thread in changers:
        thread.join()

    # Move every weight to blue and delete green on replica A while B, which made neither change, keeps routing:
    # from then on, only blue answers on either.
    assert managers[0].put(f"/v1/endpoints/{name}", json={"traffic": {"blue": 100}}).status_code == 200
    deleted = managers[0].delete(f"/v1/endpoints/{name}/deployments/green")
    assert deleted.status_code == 200, deleted.text
    after = time.monotonic()
    time.sleep(scaled(2, 10))
    stop.set()
    for thread in callers:
        thread.join()

    late_green = [when for when, deployment in answers if deployment == "green" and when >= after]
    figures.record(weight_changes=2 * rounds, traffic_reads=len(sums), calls=len(answers),
                   calls_after_delete=sum(1 for when, _ in answers if when >= after), routed_to_deleted=len(late_green))
    assert failures == []
    assert set(sums) == {100}
    assert {deployment for _, deployment in answers} == {"blue", "green"}
    assert any(when >= after for when, _ in answers)
    assert late_green == []
