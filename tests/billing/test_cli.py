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
        events.append(make_event(model="m", endpoint="instances", key_id="deployment:support/blue",
                                 prompt_tokens=0, completion_tokens=0, instance_minutes=60,
                                 instance_type="gpu-small"))
        await LocalOutboxBus(database, BusOptions()).publish_many(events)
    finally:
        await database.close()

    _meterway(env, "billing", "set-price", "--model", "m", "--input", "0.5", "--output", "1.5",
              "--from", "2026-01-01")
    assert json.loads(_meterway(env, "billing", "prices"))["data"][0]["input_per_million"] == "0.5"
    _meterway(env, "billing", "set-instance-price", "--model", "m", "--instance-type", "gpu-small",
              "--per-minute", "0.0125", "--from", "2026-01-01")
    listed = json.loads(_meterway(env, "billing", "instance-prices", "--model", "m"))["data"]
    assert [(p["instance_type"], p["per_minute"]) for p in listed] == [("gpu-small", "0.0125")]
    assert "5 events" in _meterway(env, "billing", "consume")
    report = _meterway(env, "usage", "report", "--start", "2026-11-01", "--end", "2026-11-30",
                       "--group-by", "day,model,meter", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(report)))
    # 4 x (0.0005 + 0.00075) in tokens; 60 x 0.0125 in instance-minutes
    assert [(row["meter"], row["requests"], row["instance_minutes"], row["cost"]) for row in rows] == [
        ("instance_minutes", "0", "60", "0.75"), ("tokens", "4", "0", "0.005")]
    closed = json.loads(_meterway(env, "billing", "close", "--period", "2026-11"))
    assert closed["data"][0]["amount_minor"] == 76  # 0.755 rounds half up, once, to 76 cents
    statements = _meterway(env, "billing", "statements", "--period", "2026-11", "--format", "csv")
    assert "2026-11,acme,4,4000,2000,60,0.755,76,usd" in statements
    _meterway(env, "billing", "link-stripe", "--tenant", "acme", "--customer", "cus_acme")
    exported = json.loads(_meterway(env, "billing", "export-stripe"))
    assert (exported["tokens"], exported["instance_minutes"]) == (6000, 60)
    reconciled = json.loads(_meterway(env, "billing", "reconcile"))
    assert reconciled["balanced"] and reconciled["data"][0]["exported_instance_minutes"] == 60
    assert stripe_server.store.totals("meterway_tokens") == {"cus_acme": 6000}
    assert stripe_server.store.totals("meterway_instance_minutes") == {"cus_acme": 60}
