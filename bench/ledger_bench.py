"""Ledger ingestion: events/s the consumer writes on PostgreSQL, batched vs one commit per event.

    .venv/bin/python -m bench.ledger_bench [--events 20000] [--unbatched-events 2000] [--batch 500]

Each run gets a fresh database migrated by Alembic. Events are first put on the local bus (the outbox
table); the timed part is the consumer draining it: fetch, price, INSERT ... ON CONFLICT, commit, ack.
Targets (docs/performance.md): >= 10,000 events/s batched and >= 20x the one-commit-per-event rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from billing.bus import BusOptions
from billing.consumer import LedgerConsumer
from billing.events import UsageEvent
from billing.ledger import LedgerWriter
from billing.local_bus import LocalOutboxBus
from billing.prices import PriceBook
from meterway.db import Database, migrate

ADMIN_URL = os.environ.get("METERWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _events(count: int) -> list[UsageEvent]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [UsageEvent(request_id=f"bench-{uuid.uuid4().hex}", tenant=f"t{i % 20}", key_id=f"k{i % 100}",
                       model="smollm2-135m-instruct", endpoint="chat.completions", prompt_tokens=50 + i % 300,
                       completion_tokens=i % 128, started_at=start + timedelta(milliseconds=i),
                       finished_at=start + timedelta(milliseconds=i + 40))
            for i in range(count)]


async def _drain_rate(url: str, count: int, batch: int) -> tuple[float, float]:
    """Events/s draining ``count`` queued events ``batch`` at a time, and the consumer's CPU µs/event."""
    database = Database.connect(url)
    try:
        await PriceBook(database.sessions, "usd").set_price(
            "smollm2-135m-instruct", Decimal("0.05"), Decimal("0.10"), datetime(2020, 1, 1, tzinfo=UTC))
        bus = LocalOutboxBus(database, BusOptions(publish_timeout_s=60))
        events = _events(count)
        for start in range(0, count, 1000):
            await bus.publish_many(events[start:start + 1000])
        consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, "usd"), batch_size=batch, interval_s=0)
        began, cpu = time.perf_counter(), time.process_time()
        drained = await consumer.drain()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        assert drained == count, (drained, count)
        return count / elapsed, cpu / count * 1e6
    finally:
        await database.close()


async def _fresh_database() -> str:
    name = f"mw_bench_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    await asyncio.to_thread(migrate, url)
    return url


async def _server_version() -> str:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def main(args: argparse.Namespace) -> None:
    import logging

    import sqlalchemy
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"sqlalchemy {sqlalchemy.__version__}, asyncpg {asyncpg.__version__}, "
          f"postgresql {await _server_version()}")
    print(f"load average before: {os.getloadavg()[0]:.1f} (the machine is shared; rates scale with it)")
    rates = {}
    runs = (("batched", args.events, args.batch), ("unbatched", args.unbatched_events, 1))
    for label, count, batch in runs:
        url = await _fresh_database()
        try:
            rates[label], cpu_us = await _drain_rate(url, count, batch)
        finally:
            await _admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        print(f"{label:>9}: {count} events, batch {batch}: {rates[label]:,.0f} events/s "
              f"(consumer CPU {cpu_us:.0f} µs/event)")
    ratio = rates["batched"] / rates["unbatched"]
    print(f"   ratio: {ratio:.1f}x (targets: batched >= 10,000 events/s, ratio >= 20x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ledger ingestion benchmark (PostgreSQL)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--unbatched-events", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
