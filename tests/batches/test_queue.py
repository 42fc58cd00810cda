"""The batch queue in the database (SQLite and PostgreSQL): the per-tenant limit on queued lines, the counts
``/metrics`` shows."""

from __future__ import annotations

import asyncio

import pytest

from batches.service import BatchService, NewBatch
from meterway.db import Database
from meterway.errors import RateLimited


def _new(tenant: str, lines: int) -> NewBatch:
    return NewBatch(tenant, "key_1", "file-1", "/v1/chat/completions", "24h", None, lines)


async def _queue_limit(url: str) -> None:
    database = Database.connect(url)
    batches = BatchService(database.sessions, queued_lines=100)
    try:
        first = await batches.create(_new("acme", 60))
        await batches.create(_new("acme", 40))  # exactly at the limit
        with pytest.raises(RateLimited) as refused:
            await batches.create(_new("acme", 1))
        assert refused.value.param == "input_file_id" and "100" in refused.value.message
        await batches.create(_new("globex", 100))  # the limit is per tenant

        await batches.record(first["id"], 1, True, "{}")  # one line answered: one line of room
        await batches.create(_new("acme", 1))
        await batches.move(first["id"], "completed")  # a finished job's lines are no longer queued
        await batches.create(_new("acme", 59))

        statuses, queued = await batches.counts()
        assert statuses == {"validating": 4, "completed": 1}
        assert queued == 40 + 100 + 1 + 59
    finally:
        await database.close()


def test_queued_lines_are_limited_per_tenant(database_url: str) -> None:
    asyncio.run(_queue_limit(database_url))
