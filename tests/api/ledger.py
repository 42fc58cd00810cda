"""Reading a server's ledger directly from its database, for tests that compare it with responses."""

from __future__ import annotations

import asyncio
import time
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
