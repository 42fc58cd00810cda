"""The ledger consumer, run as its own process and killed with SIGKILL during a load: 0 lost, 0 doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from billing.bus import BusOptions
from billing.local_bus import LocalOutboxBus
from billing.nats_bus import NatsJetStreamBus
from billing.tables import LedgerEntryRow
from meterway.db import Database
from tests.battery import scaled
from tests.billing.conftest import T0

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.battery import Figures

REPO = Path(__file__).resolve().parents[2]
EVENTS = int(scaled(4000, 10000))  # the battery command runs 10,000 events and 8 kills
KILLS = int(scaled(4, 8))
NATS_URL = "nats://127.0.0.1:4222"


class ConsumerProcess:
    """``python -m billing.consumer`` with the test's settings; ``kill()`` is a real SIGKILL."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path) -> None:
        self._env = {**os.environ, **env}
        self._args = args
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "billing.consumer", *self._args], cwd=REPO,
                                            env=self._env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        assert self.process.returncode == -signal.SIGKILL


async def _ledger_count(database: Database) -> tuple[int, int, int]:
    async with database.sessions() as session:
        row = (await session.execute(select(
            func.count(), func.count(func.distinct(LedgerEntryRow.request_id)),
            func.coalesce(func.sum(LedgerEntryRow.prompt_tokens), 0)))).one()
    return int(row[0]), int(row[1]), int(row[2])


async def _run_load(database: Database, consumer: ConsumerProcess, events: list,
                    publish: Callable[[list], Awaitable[None]]) -> list[int]:
    """Publish (with some re-publishes) while killing the consumer each time it made progress."""
    await publish(events[: len(events) // 2])
    consumer.start()
    publisher = asyncio.create_task(publish([*events[len(events) // 2:], *events[:300]]))
    killed_at = []
    try:
        for _ in range(KILLS):
            before = (await _ledger_count(database))[0]
            async with asyncio.timeout(120):
                while (await _ledger_count(database))[0] < before + len(events) // 12:
                    await asyncio.sleep(0.01)
            consumer.kill()
            killed_at.append((await _ledger_count(database))[0])
            consumer.start()
        await publisher
        async with asyncio.timeout(180):  # liveness bound, not a speed assertion
            while (await _ledger_count(database))[0] < len(events):
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let any redelivery arrive: it must add nothing
    finally:
        consumer.kill()
    return killed_at


def _events(make_event) -> list:
    return [make_event(prompt_tokens=i % 97 + 1, started_at=T0 + timedelta(seconds=i)) for i in range(EVENTS)]


def _assert_exactly_once(counts: tuple[int, int, int], events: list, killed_at: list[int],
                         figures: Figures) -> None:
    figures.record(events=len(events), republished=300, consumer_kills=len(killed_at), ledger_rows=counts[0],
                   lost=len(events) - counts[1], duplicated=counts[0] - counts[1])
    assert counts == (len(events), len(events), sum(e.prompt_tokens for e in events))
    assert len(killed_at) == KILLS
    assert any(0 < at < len(events) for at in killed_at)  # at least one kill landed mid-load


@pytest.mark.battery(6)
@pytest.mark.slow
async def test_local_bus_consumer_killed_repeatedly(database_url, tmp_path, make_event, figures: Figures) -> None:
    database = Database.connect(database_url)
    bus = LocalOutboxBus(database, BusOptions())
    consumer = ConsumerProcess({"METERWAY_DATABASE_URL": database_url, "METERWAY_HOME": str(tmp_path),
                                "METERWAY_NATS_URL": "", "METERWAY_LEDGER_BATCH": "50",
                                "METERWAY_LEDGER_INTERVAL_S": "0.05"}, [], tmp_path / "consumer.log")

    async def publish(chunk: list) -> None:
        for start in range(0, len(chunk), 100):
            await bus.publish_many(chunk[start:start + 100])

    events = _events(make_event)
    try:
        killed_at = await _run_load(database, consumer, events, publish)
        _assert_exactly_once(await _ledger_count(database), events, killed_at, figures)
        assert await bus.pending() == 0
    finally:
        await database.close()


@pytest.mark.battery(6)
@pytest.mark.slow
async def test_nats_consumer_killed_repeatedly(sqlite_url, tmp_path, make_event, figures: Figures) -> None:
    name = f"MWTEST_{uuid.uuid4().hex[:10]}"
    options = BusOptions(stream=name, subject=f"mwtest.{name}", durable=f"{name}_ledger", ack_wait_s=2.0)
    database = Database.connect(sqlite_url)
    bus = NatsJetStreamBus(NATS_URL, options)
    consumer = ConsumerProcess(
        {"METERWAY_DATABASE_URL": sqlite_url, "METERWAY_HOME": str(tmp_path), "METERWAY_NATS_URL": NATS_URL,
         "METERWAY_LEDGER_BATCH": "50", "METERWAY_LEDGER_INTERVAL_S": "0.05"},
        ["--nats-stream", options.stream, "--nats-subject", options.subject, "--durable", options.durable,
         "--ack-wait", "2"], tmp_path / "consumer.log")

    async def publish(chunk: list) -> None:
        for start in range(0, len(chunk), 100):
            await asyncio.gather(*(bus.publish(event) for event in chunk[start:start + 100]))

    events = _events(make_event)
    try:
        killed_at = await _run_load(database, consumer, events, publish)
        _assert_exactly_once(await _ledger_count(database), events, killed_at, figures)
    finally:
        js = await bus._jetstream()
        await js.delete_stream(options.stream)
        await bus.close()
        await database.close()
