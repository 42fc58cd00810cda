"""Tenant management (admin): limits that cap all of a tenant's keys, and the Stripe customer link."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import get, patch
from litestar.params import Parameter
from msgspec import Meta

from meterway.errors import NotFound
from meterway.roles import PLATFORM
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.fields import NAME_PATTERN, Body, BudgetAmount, BudgetPeriod, Limit, StripeCustomer
from service.tenants import TenantService

if TYPE_CHECKING:
    from service.tables import TenantRow

PositiveInt = Annotated[int, Meta(ge=1)]
TenantId = Annotated[str, Parameter(pattern=NAME_PATTERN, description="the tenant's name")]


class TenantUpdate(Body, kw_only=True, omit_defaults=True):
    rpm: Limit | None = None
    tpm: Limit | None = None
    max_concurrency: Limit | None = None
    budget_amount: BudgetAmount | None = None
    budget_period: BudgetPeriod | None = None
    stripe_customer_id: StripeCustomer | None = None


class Tenant(msgspec.Struct, kw_only=True):
    id: str
    object: str = "tenant"
    created_at: int
    stripe_customer_id: str | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    budget_amount: str | None
    budget_period: str | None


class TenantList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Tenant]


def _view(row: TenantRow) -> Tenant:
    return Tenant(id=row.id, created_at=int(row.created_at.timestamp()), stripe_customer_id=row.stripe_customer_id,
                  rpm=row.rpm, tpm=row.tpm, max_concurrency=row.max_concurrency,
                  budget_amount=None if row.budget_amount is None else str(row.budget_amount),
                  budget_period=row.budget_period)


def _settings(row: TenantRow | None) -> dict[str, Any] | None:
    """What the audit log keeps of a tenant before and after a change."""
    return None if row is None else {k: v for k, v in msgspec.structs.asdict(_view(row)).items()
                                     if k not in ("id", "object", "created_at")}


@get("/v1/tenants", summary="List tenants (admin)", tags=["Tenants"], opt=needs(PLATFORM))
async def list_tenants(principal: Principal, tenants: TenantService) -> TenantList:
    return TenantList(data=[_view(row) for row in await tenants.list()])


@get("/v1/tenants/{tenant_id:str}", summary="Retrieve a tenant (admin)", tags=["Tenants"], opt=needs(PLATFORM))
async def get_tenant(tenant_id: TenantId, principal: Principal, tenants: TenantService) -> Tenant:
    return _view(await tenants.get(tenant_id))


@patch("/v1/tenants/{tenant_id:str}", summary="Set a tenant's limits or Stripe customer (admin)", tags=["Tenants"],
       opt=needs(PLATFORM))
async def update_tenant(tenant_id: TenantId, data: TenantUpdate, tenants: TenantService,
                        audit: AuditTrail) -> Tenant:
    """Limits here cap every key of the tenant together; creates the tenant if it does not exist."""
    changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
    try:
        before = _settings(await tenants.get(tenant_id))
    except NotFound:
        before = None
    row = await tenants.update(tenant_id, changes)
    await audit.record("tenant.update", tenant_id, before=before, after=_settings(row), tenant=tenant_id)
    return _view(row)


tenant_handlers = [list_tenants, get_tenant, update_tenant]
