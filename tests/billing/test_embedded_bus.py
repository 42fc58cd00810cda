"""The embedded default on SQLite: the outbox and the one-transaction ledger drain bill like the general path."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from billing.bus import BusOptions
from billing.consumer import LedgerConsumer
from billing.ledger import LedgerWriter
from billing.local_bus import LocalOutboxBus
from billing.periods import PeriodCloser
from billing.prices import PriceBook
from meterway.db import Database
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows, rollup_drift

_SAME = ("tenant", "key_id", "model", "base_model", "endpoint", "prompt_tokens", "completion_tokens",
         "input_per_million", "output_per_million", "cost", "currency", "started_at", "finished_at",
         "usage_day", "usage_hour", "status", "billable", "period", "kind", "instance_type", "instance_minutes",
         "per_instance_minute")


async def test_drained_entries_equal_the_writers_own(sqlite_url, make_event) -> None:
    database = Database.connect(sqlite_url)
    bus = LocalOutboxBus(database, BusOptions())
    writer = LedgerWriter(database.sessions, "usd")
    try:
        book = PriceBook(database.sessions, "usd")
        await book.set_price("m", Decimal("0.123"), Decimal("7"), T0 - timedelta(days=60))
        await book.set_price("m", Decimal("0.5"), Decimal("1.10"), T0)
        await book.set_instance_price("m", "gpu-small", Decimal("0.0125"), T0 - timedelta(days=60))
        await PeriodCloser(database.sessions).close_period("2026-10")
        shapes = [{"model": "m", "started_at": T0 - timedelta(microseconds=1)},
                  {"model": "m", "started_at": T0, "billable": False},
                  {"model": "ft:m:acme", "base_model": "m", "started_at": T0 + timedelta(hours=3)},
                  {"model": "m", "started_at": T0 - timedelta(days=20), "status": "abandoned"},  # closed: adjusts
                  {"model": "unpriced"},
                  {"model": "ft:m:acme", "base_model": "m", "endpoint": "instances", "prompt_tokens": 0,
                   "completion_tokens": 0, "instance_minutes": 1, "instance_type": "gpu-small"},
                  {"model": "m", "endpoint": "instances", "instance_minutes": 3, "instance_type": "unpriced"}]
        direct = [make_event(**shape) for shape in shapes]
        via_bus = [make_event(**shape) for shape in shapes]
        await writer.write(direct)
        for event in via_bus:
            await bus.publish(event)
        consumer = LedgerConsumer(bus, writer, batch_size=100, interval_s=0.01)
        assert await consumer.drain() == len(via_bus)
        rows = {row.request_id: row for row in await ledger_rows(database)}
        for one, other in zip(direct, via_bus, strict=True):
            mine, theirs = rows[one.request_id], rows[other.request_id]
            assert {f: getattr(theirs, f) for f in _SAME} == {f: getattr(mine, f) for f in _SAME}
        adjusted = rows[via_bus[3].request_id]
        assert (adjusted.kind, adjusted.period) == ("adjustment", "2026-11")
        assert rows[via_bus[2].request_id].input_per_million == Decimal("0.5")  # the base model's price
        assert rows[via_bus[5].request_id].cost == Decimal("0.0125")  # the base model's instance price
        assert (rows[via_bus[6].request_id].instance_minutes, rows[via_bus[6].request_id].cost) == (3, 0)
        assert await bus.pending() == 0
        assert await rollup_drift(database) == []  # the drain keeps the rollup as the writer does
    finally:
        await bus.close()
        await database.close()


async def test_publishes_racing_two_drains_are_billed_once_each(sqlite_url, make_event) -> None:
    database = Database.connect(sqlite_url)
    bus = LocalOutboxBus(database, BusOptions())
    other = LocalOutboxBus(database, BusOptions())  # a second consumer's bus: its own connections and lock
    writer = LedgerWriter(database.sessions, "usd")
    consumers = [LedgerConsumer(b, writer, batch_size=37, interval_s=0.01) for b in (bus, other)]
    events = [make_event() for _ in range(600)]
    try:
        async def drain_while_publishing(consumer: LedgerConsumer, done: asyncio.Event) -> None:
            while not done.is_set():
                await consumer.drain_once()  # the two often read the same rows: one of them must redo
                await asyncio.sleep(0)

        done = asyncio.Event()
        draining = asyncio.gather(*(drain_while_publishing(c, done) for c in consumers))
        for start in range(0, len(events), 40):  # 40 requests at a time, re-publishing a few as a retry would
            await asyncio.gather(*(bus.publish(e) for e in [*events[start:start + 40], *events[start:start + 3]]))
        done.set()
        await draining
        await consumers[0].drain()
        rows = await ledger_rows(database)
        assert sorted(row.request_id for row in rows) == sorted(e.request_id for e in events)
        assert sum(row.prompt_tokens for row in rows) == sum(e.prompt_tokens for e in events)
        assert await bus.pending() == 0
        assert await rollup_drift(database) == []  # re-published events and redone batches add nothing
    finally:
        await bus.close()
        await other.close()
        await database.close()
