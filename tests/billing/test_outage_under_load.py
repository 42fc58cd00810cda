"""Battery row 7: the database and the bus each unreachable under HTTP load (a minute each at the battery's
scale), on private PostgreSQL and NATS instances. No request is served unbilled, none billed twice, none
billed that was refused, and the backlog drains once they are back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import httpx
import pytest

from meterway.db import migrate
from tests.api.ledger import ledger_rows
from tests.battery import scaled
from tests.private_services import PrivateNats, PrivatePostgres
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.battery import Figures

pytestmark = pytest.mark.slow
BODY = {"model": "meterway-echo", "messages": [{"role": "user", "content": "outage"}], "max_tokens": 4}


@pytest.fixture
def services() -> Iterator[tuple[PrivatePostgres, PrivateNats]]:
    postgres, nats = PrivatePostgres().init(), PrivateNats().start()
    try:
        migrate(postgres.url)
        yield postgres, nats
    finally:
        nats.remove()
        postgres.remove()


class Load:
    """Clients sending requests (plain and streamed) until stopped; what each got back."""

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret
        self.served: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.running = True

    async def client(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as http:
            while self.running:
                stream = index % 2 == 1
                try:
                    request_id = await (self._streamed(http) if stream else self._plain(http))
                except httpx.TransportError:
                    self.statuses[0] += 1
                    continue
                if request_id is not None:
                    self.served.append(request_id)
                else:
                    await asyncio.sleep(0.05)

    async def _plain(self, http: httpx.AsyncClient) -> str | None:
        answer = await http.post("/v1/chat/completions", json=BODY)
        self.statuses[answer.status_code] += 1
        return str(answer.json()["id"]) if answer.status_code == 200 else None

    async def _streamed(self, http: httpx.AsyncClient) -> str | None:
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        async with http.stream("POST", "/v1/chat/completions", json=body) as answer:
            self.statuses[answer.status_code] += 1
            request_id, usage = None, False
            async for line in answer.aiter_lines():
                if line.startswith("data: {"):
                    request_id = line.split('"id":"', 1)[1].split('"', 1)[0] if '"id":"' in line else request_id
                    usage = usage or '"usage":{' in line
            return request_id if answer.status_code == 200 and usage else None


@pytest.mark.battery(7)
async def test_database_and_bus_down_under_load(services: tuple[PrivatePostgres, PrivateNats], store_dir: Path,
                                                tmp_path: Path, figures: Figures) -> None:
    postgres, nats = services
    outage_s = scaled(8.0, 60.0)
    gateway = ServerProcess(home=tmp_path / "gateway", store=store_dir, env={
        "METERWAY_DATABASE_URL": postgres.url, "METERWAY_NATS_URL": nats.url}).start()
    try:
        tenant = f"outage-{uuid.uuid4().hex[:6]}"
        load = Load(gateway.url, str(gateway.create_key(tenant)["secret"]))
        clients = [asyncio.create_task(load.client(i)) for i in range(6)]
        await asyncio.sleep(2)
        for service in (nats, postgres):
            service.stop()
            await asyncio.sleep(outage_s)
            service.start()
            await asyncio.sleep(2)
        load.running = False
        await asyncio.gather(*clients)
        recovered = time.monotonic()
        ledger = await ledger_rows(gateway, load.served, timeout_s=240)
        drained_s = time.monotonic() - recovered
    finally:
        gateway.stop()
    mine = [row for row in ledger["all"] if row["tenant"] == tenant]
    billed = Counter(row["request_id"] for row in mine)
    figures.record(outages=f"bus {outage_s:.0f} s, then database {outage_s:.0f} s",
                   requests=sum(load.statuses.values()), served=len(load.served), statuses=dict(load.statuses),
                   ledger_entries=len(mine),
                   lost=len(set(load.served) - set(billed)), duplicated=sum(n - 1 for n in billed.values()),
                   billed_unserved=len(set(billed) - set(load.served)), backlog_drained_s=round(drained_s, 1))
    assert len(set(load.served)) == len(load.served) > 0
    assert set(load.statuses) <= {200, 503}, load.statuses  # an outage is a retryable 503, never a 500
    unbilled, unserved = set(load.served) - set(billed), set(billed) - set(load.served)
    assert not unbilled and not unserved, (sorted(unbilled), sorted(unserved))
    assert max(billed.values()) == 1
