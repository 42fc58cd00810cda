"""How a batch of ledger rows is inserted, per database: always ``ON CONFLICT (request_id) DO NOTHING``.

PostgreSQL gets one ``INSERT ... SELECT FROM unnest(arrays)`` statement per batch, sent straight through
asyncpg: column arrays cost far less to encode and plan than a multi-row VALUES list built by SQLAlchemy.
SQLite uses SQLAlchemy's executemany. Both return the request ids that were new (the rollup adds only those).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import sqlite

from billing.tables import LedgerEntryRow

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession

# Column order of the unnest statement, with the PostgreSQL array type each column is sent as.
_PG_COLUMNS = {
    "request_id": "text", "tenant": "text", "key_id": "text", "model": "text", "base_model": "text",
    "end_user": "text", "endpoint": "text", "endpoint_name": "text", "deployment": "text", "batch_id": "text",
    "subject": "text", "prompt_tokens": "int4", "completion_tokens": "int4", "input_per_million": "numeric",
    "output_per_million": "numeric", "instance_type": "text", "instance_minutes": "int4",
    "per_instance_minute": "numeric", "cost": "numeric", "currency": "text", "started_at": "timestamptz",
    "finished_at": "timestamptz", "duration_ms": "int4", "usage_day": "text", "usage_hour": "text", "status": "text",
    "billable": "bool", "period": "text", "kind": "text", "created_at": "timestamptz",
}
LEDGER_COLUMNS: tuple[str, ...] = tuple(_PG_COLUMNS)  # every column a writer fills, in this order
_PG_UNNEST = (
    f"INSERT INTO ledger_entries ({', '.join(_PG_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(_PG_COLUMNS.values(), 1))}) "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)

BulkInsert = Callable[["AsyncSession", list[dict[str, Any]]], Awaitable[set[str]]]


async def _postgresql(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    arrays = [[row[name] for row in rows] for name in _PG_COLUMNS]
    inserted = await raw.driver_connection.fetch(_PG_UNNEST, *arrays)  # type: ignore[union-attr]
    return {record["request_id"] for record in inserted}


async def _sqlite(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    ledger: Table = LedgerEntryRow.__table__  # type: ignore[assignment]
    upsert = sqlite.insert(ledger).on_conflict_do_nothing(index_elements=["request_id"])
    connection = await session.connection()  # Core, not ORM: no per-row bookkeeping
    return set((await connection.execute(upsert.returning(ledger.c.request_id), rows)).scalars())


BULK_INSERTS: dict[str, BulkInsert] = {"postgresql": _postgresql, "sqlite": _sqlite}
