"""Helpers for billing tests: read the ledger directly, as finance would; add tenants linked to Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from billing.stripe_export import link_stripe_customer
from billing.tables import LedgerEntryRow

if TYPE_CHECKING:
    from meterway.db import Database


async def ledger_rows(database: Database) -> list[Any]:
    """Every ledger entry, oldest first."""
    async with database.sessions() as session:
        return list((await session.execute(select(LedgerEntryRow).order_by(LedgerEntryRow.id))).scalars())


def total_cost(rows: list[Any]) -> Decimal:
    return sum((row.cost for row in rows if row.billable), Decimal(0))


async def add_tenants(database: Database, **links: str | None) -> None:
    """Create tenants, each linked to the Stripe customer given (None: not linked)."""
    async with database.sessions() as session, session.begin():
        for tenant in links:
            await session.execute(text("INSERT INTO tenants (id, created_at) VALUES (:id, :at)"),
                                  {"id": tenant, "at": datetime.now(UTC)})
    for tenant, customer in links.items():
        if customer:
            await link_stripe_customer(database.sessions, tenant, customer)


async def rollup_drift(database: Database) -> list[Any]:
    """Where the usage rollup and the ledger disagree (they never should)."""
    from billing.rollup import drift

    async with database.sessions() as session:
        return await drift(session)
