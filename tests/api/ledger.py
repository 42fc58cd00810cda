"""Reading a server's ledger directly from its database, for tests that compare it with responses."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from tests.server import ServerProcess


def database_url(server: ServerProcess) -> str:
    return server.env.get("METERWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{server.home / 'meterway.db'}"


async def ledger_rows(server: ServerProcess, request_ids: list[str], timeout_s: float = 30.0) -> dict[str, Any]:
    """The ledger entries of ``request_ids``, waiting for the consumer to write them all."""
    engine = create_async_engine(database_url(server))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            async with engine.connect() as connection:
                result = await connection.execute(text("SELECT * FROM ledger_entries"))
                rows = [dict(row._mapping) for row in result]
            found = {r["request_id"]: r for r in rows if r["request_id"] in set(request_ids)}
            if len(found) == len(set(request_ids)) or time.monotonic() > deadline:
                return {"by_id": found, "all": rows}
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def bill_in_the_past(server: ServerProcess, tenants: list[str], start: datetime, model: str) -> None:
    """Two requests per tenant of ``model`` from ``start`` on (1,000 and 2,000 prompt tokens, 500 completion
    tokens each), written to the server's ledger as its consumer would: usage of a month that has ended."""
    from billing.events import UsageEvent
    from billing.ledger import LedgerWriter
    from meterway.db import Database

    async def write() -> None:
        database = Database.connect(database_url(server))
        try:
            events = [UsageEvent(request_id=f"req-{uuid.uuid4().hex}", tenant=tenant, key_id="key-1", model=model,
                                 endpoint="chat.completions", prompt_tokens=1000 * (i + 1), completion_tokens=500,
                                 started_at=start + timedelta(hours=i),
                                 finished_at=start + timedelta(hours=i, seconds=1))
                      for tenant in tenants for i in range(2)]
            await LedgerWriter(database.sessions, "usd").write(events)
        finally:
            await database.close()

    # Its own thread: a caller may be inside an event loop (Playwright's sync API runs one).
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, write()).result()
