"""Helpers for billing tests: read the ledger directly, as finance would."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from billing.tables import LedgerEntryRow

if TYPE_CHECKING:
    from meterway.db import Database


async def ledger_rows(database: Database) -> list[Any]:
    """Every ledger entry, oldest first."""
    async with database.sessions() as session:
        return list((await session.execute(select(LedgerEntryRow).order_by(LedgerEntryRow.id))).scalars())


def total_cost(rows: list[Any]) -> Decimal:
    return sum((row.cost for row in rows if row.billable), Decimal(0))
