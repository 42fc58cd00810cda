"""The usage rollup that reports read: it equals the ledger after every write path, redeliveries included, a
report from it equals one from the entries, and the migration fills it from the entries already written."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select

from billing import rollup
from billing.ledger import LedgerWriter
from billing.reports import UsageQuery, UsageReports
from billing.tables import UsageRollupRow
from meterway.db import MIGRATIONS, Database, migrate
from tests.billing.conftest import T0
from tests.billing.helpers import rollup_drift
from tests.billing.test_reports import _load

# Every pair of the groups the rollup keeps (test_reports takes every combination through both paths).
ROLLUP_COMBOS = [combo for n in range(3) for combo in itertools.combinations(rollup.GROUPS, n)]


async def _rollup_rows(database: Database) -> int:
    async with database.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(UsageRollupRow))).scalar_one())


async def test_the_rollup_equals_the_ledger_and_a_redelivery_adds_nothing(database, make_event) -> None:
    await _load(database, make_event)
    assert await rollup_drift(database) == []
    assert await _rollup_rows(database) > 0
    again = [make_event(tenant="t1", key_id="k1", model="a", started_at=T0 + timedelta(hours=7))]
    writer = LedgerWriter(database.sessions, "usd")
    assert await writer.write(again) == 1
    assert await writer.write([*again, *again]) == 0  # redelivered, twice in one batch: no entry, no sum
    assert await rollup_drift(database) == []


async def test_a_report_from_the_rollup_equals_one_from_the_entries(database, make_event) -> None:
    await _load(database, make_event)
    reports = UsageReports(database.sessions)
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=3)
    # No entry lies in the microsecond between the two windows, so both hold the same entries; only the first
    # is on whole hours, which the rollup answers.
    off_start, off_end = start - timedelta(microseconds=1), end - timedelta(microseconds=1)
    for combo, tenant in itertools.product(ROLLUP_COMBOS, (None, "t1")):
        assert rollup.answers(combo, start, end) and not rollup.answers(combo, off_start, off_end)
        for window in ((None, None), (start, end)):
            from_rollup = await reports.report(UsageQuery(*window, group_by=combo, tenant=tenant))
            off = (off_start, off_end) if window[0] else (None, off_end + timedelta(days=30))
            from_entries = await reports.report(UsageQuery(*off, group_by=combo, tenant=tenant))
            assert from_rollup.total.requests > 0
            assert from_rollup.total.as_dict()["mean_latency_ms"] == 250  # every request took 250 ms
            assert [line.as_dict() for line in from_rollup.lines] == \
                [line.as_dict() for line in from_entries.lines], (combo, window, tenant)
            assert from_rollup.total.as_dict() == from_entries.total.as_dict(), (combo, window, tenant)


async def test_the_migration_fills_the_rollup_from_the_entries_so_far(database_url, make_event) -> None:
    database = Database.connect(database_url)
    try:
        await _load(database, make_event)
        expected = await _rollup_rows(database)
    finally:
        await database.close()
    config = Config(str(MIGRATIONS.parent / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = database_url
    # Back to a database written before the rollup existed, then up again (Alembic runs its own event loop).
    await asyncio.to_thread(command.downgrade, config, "0015")
    await asyncio.to_thread(migrate, database_url)
    database = Database.connect(database_url)
    try:
        assert await _rollup_rows(database) == expected
        assert await rollup_drift(database) == []
    finally:
        await database.close()
