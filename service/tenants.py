"""Tenants: their limits (a ceiling over all their keys) and their Stripe customer link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from meterway.errors import InvalidRequest, NotFound
from service.keys import check_limits, check_name
from service.tables import TenantRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

TENANT_FIELDS = ("rpm", "tpm", "max_concurrency", "budget_amount", "budget_period")


class TenantService:
    """Admin management of tenants; changes reach the throttle as soon as the key cache refreshes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], on_change: Callable[[], None]) -> None:
        self._sessions = sessions
        self._on_change = on_change

    async def list(self) -> list[TenantRow]:
        async with self._sessions() as session:
            return list(await session.scalars(select(TenantRow).order_by(TenantRow.id)))

    async def get(self, tenant: str) -> TenantRow:
        async with self._sessions() as session:
            row = await session.get(TenantRow, tenant)
        if row is None:
            raise NotFound(f"No tenant '{tenant}'.", param="tenant")
        return row

    async def update(self, tenant: str, changes: dict[str, Any]) -> TenantRow:
        """Create or change a tenant's limits and Stripe customer id."""
        check_name("tenant", tenant)
        limits = check_limits({k: v for k, v in changes.items() if k in TENANT_FIELDS}, partial=True)
        customer = changes.get("stripe_customer_id")
        if customer is not None and not (isinstance(customer, str) and customer.startswith("cus_")):
            raise InvalidRequest("'stripe_customer_id' must be a Stripe customer id (cus_...).",
                                 param="stripe_customer_id")
        async with self._sessions.begin() as session:
            row = await session.get(TenantRow, tenant)
            if row is None:
                row = TenantRow(id=tenant, created_at=datetime.now(UTC))
                session.add(row)
            for field, value in limits.items():
                setattr(row, field, value)
            if customer is not None:
                row.stripe_customer_id = customer
        self._on_change()
        return row
