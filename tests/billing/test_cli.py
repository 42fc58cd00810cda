"""The billing commands of the ``meterway`` CLI, run as real processes on a migrated database."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from billing.bus import BusOptions
from billing.local_bus import LocalOutboxBus
from meterway.db import Database

REPO = Path(__file__).resolve().parents[2]


def _meterway(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
async def test_prices_consume_report_close_and_stripe_from_the_cli(sqlite_url, tmp_path, make_event,
                                                                   stripe_server) -> None:
    env = {"METERWAY_DATABASE_URL": sqlite_url, "METERWAY_HOME": str(tmp_path), "METERWAY_NATS_URL": "",
           "METERWAY_STRIPE_API_KEY": stripe_server.api_key, "METERWAY_STRIPE_API_BASE": stripe_server.url}
    database = Database.connect(sqlite_url)
    try:
        async with database.sessions() as session, session.begin():
            await session.execute(text("INSERT INTO tenants (id, created_at) VALUES ('acme', :at)"),
                                  {"at": datetime.now(UTC)})
        events = [make_event(model="m", prompt_tokens=1000, completion_tokens=500) for _ in range(4)]
        await LocalOutboxBus(database, BusOptions()).publish_many(events)
    finally:
        await database.close()

    _meterway(env, "billing", "set-price", "--model", "m", "--input", "0.5", "--output", "1.5",
              "--from", "2026-01-01")
    assert json.loads(_meterway(env, "billing", "prices"))["data"][0]["input_per_million"] == "0.5"
    assert "4 events" in _meterway(env, "billing", "consume")
    report = _meterway(env, "usage", "report", "--start", "2026-11-01", "--end", "2026-11-30",
                       "--group-by", "day,model", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(report)))
    assert [row["cost"] for row in rows] == ["0.005"]  # 4 x (0.0005 + 0.00075)
    closed = json.loads(_meterway(env, "billing", "close", "--period", "2026-11"))
    assert closed["data"][0]["amount_minor"] == 1  # 0.005 rounds half up to one cent
    statements = _meterway(env, "billing", "statements", "--period", "2026-11", "--format", "csv")
    assert "2026-11,acme,4,4000,2000,0.005,1,usd" in statements
    _meterway(env, "billing", "link-stripe", "--tenant", "acme", "--customer", "cus_acme")
    assert json.loads(_meterway(env, "billing", "export-stripe"))["tokens"] == 6000
    reconciled = json.loads(_meterway(env, "billing", "reconcile"))
    assert reconciled["balanced"] and stripe_server.store.totals() == {"cus_acme": 6000}
