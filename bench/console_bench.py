"""Console page renders over a busy ledger: p50/p90 of ``/console`` (overview) and ``/console/usage``.

    .venv/bin/python -m bench.console_bench [--events 100000] [--runs 40] [--postgres]

A real gateway (``tests.server.ServerProcess``: SQLite under a fresh METERWAY_HOME, or with ``--postgres`` a
fresh database on METERWAY_TEST_PG's server; the echo model) with one
tenant whose period holds ``--events`` ledger entries, written straight into ``ledger_entries`` in one
executemany, with what they add to the usage rollup (``billing.rollup.deltas``, as the ledger's writers do; the
bench measures reading, not ingestion). A signed-in httpx client then times each page: the
console calls ``/v1/usage`` (aggregated in SQL) and the other REST routes over HTTP, as the browser's user.
Target (docs/performance.md): <= 100 ms p50 for each page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import insert

from billing import rollup
from billing.tables import LedgerEntryRow
from meterway.db import Database
from tests.server import ADMIN_KEY, ServerProcess

MODELS = ("meterway-echo", "smollm2-135m-instruct", "qwen2.5-0.5b-instruct")


def _rows(count: int, tenant: str, keys: list[str]) -> list[dict[str, object]]:
    """``count`` entries spread evenly from the start of this month until now."""
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    step = (now - start) / count
    rows = []
    for i in range(count):
        at = start + step * i
        stamp = at.isoformat()
        prompt, completion = 20 + i % 300, i % 128
        rows.append({"request_id": f"bench-{i}", "tenant": tenant, "key_id": keys[i % len(keys)],
                     "model": MODELS[i % len(MODELS)], "endpoint": "chat.completions", "endpoint_name": "serverless",
                     "deployment": "default", "prompt_tokens": prompt, "completion_tokens": completion,
                     "input_per_million": Decimal("0.05"), "output_per_million": Decimal("0.10"),
                     "per_instance_minute": Decimal(0), "instance_minutes": 0,
                     "cost": (prompt * Decimal("0.05") + completion * Decimal("0.10")) / 1_000_000,
                     "currency": "usd", "started_at": at, "finished_at": at + timedelta(milliseconds=200 + i % 400),
                     "duration_ms": 200 + i % 400, "usage_day": stamp[:10],
                     "usage_hour": stamp[:13], "status": "ok", "billable": True, "period": stamp[:7],
                     "kind": "usage", "created_at": at})
    return rows


async def _fill(url: str, rows: list[dict[str, object]]) -> float:
    database = Database.connect(url)
    started = time.perf_counter()
    try:
        async with database.sessions() as session:
            for first in range(0, len(rows), 20_000):
                await session.execute(insert(LedgerEntryRow), rows[first:first + 20_000])
            await rollup.upsert(session, rollup.deltas(rows))
            await session.commit()
    finally:
        await database.close()
    return time.perf_counter() - started


def _time(client: httpx.Client, path: str, runs: int) -> dict[str, float]:
    client.get(path).raise_for_status()  # warm: the first render compiles the template
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p90_ms": samples[int(len(samples) * 0.9) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database instead of SQLite")
    args = parser.parse_args()
    if not args.postgres:
        root = Path(tempfile.mkdtemp(prefix="console-bench-"))
        _bench(args, root, f"sqlite+aiosqlite:///{root / 'home' / 'meterway.db'}", {})
        return
    from tests.conftest import fresh_pg_database

    with fresh_pg_database() as url:
        _bench(args, Path(tempfile.mkdtemp(prefix="console-bench-")), url, {"METERWAY_DATABASE_URL": url})


def _bench(args: argparse.Namespace, root: Path, url: str, env: dict[str, str]) -> None:
    server = ServerProcess(home=root / "home", store=root / "store", env=env).start()
    try:
        keys = [str(server.create_key("bench", name=f"k{i}")["id"]) for i in range(4)]
        secret = str(server.create_key("bench", name="console")["secret"])
        fill_s = asyncio.run(_fill(url, _rows(args.events, "bench", keys)))
        print(f"{url.split(':')[0]} ledger: {args.events} entries for tenant 'bench' written in {fill_s:.1f} s")
        for who, key in (("tenant", secret), ("admin", ADMIN_KEY)):
            with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False) as client:
                client.post("/console/login", data={"api_key": key})
                for path in ("/console", "/console/usage", "/console/usage?bucket=hour&by=key"):
                    figures = _time(client, path, args.runs)
                    print(f"{who:6} {path:38} p50 {figures['p50_ms']:6.1f} ms  p90 {figures['p90_ms']:6.1f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
