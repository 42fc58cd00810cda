"""Billing periods over REST: the closed periods, closing one (admin), a closed period's statements (finance; a
tenant sees its own). The CLI's ``meterway billing close`` / ``statements`` do the same on the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter, QueryParameter

from billing.money import next_period
from billing.periods import PeriodCloser, statements_csv
from meterway.errors import Conflict, NotFound
from meterway.roles import BILLING, PLATFORM
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.routes.billing import tenant_scope

if TYPE_CHECKING:
    from billing.periods import Statement

PERIOD = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"
Period = Annotated[str, Parameter(pattern=PERIOD, description="a UTC month, YYYY-MM")]


class PeriodView(msgspec.Struct, kw_only=True):
    object: str = "billing_period"
    period: str
    closed_at: int


class PeriodList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[PeriodView]


@get("/v1/billing/periods", summary="List the closed billing periods", tags=["Billing"], opt=needs(BILLING))
async def list_periods(principal: NamedDependency[Principal],
                       period_closer: NamedDependency[PeriodCloser]) -> PeriodList:
    """Every closed period (its statements are final), newest first."""
    closed = await period_closer.closed()
    return PeriodList(data=[PeriodView(period=p, closed_at=int(at.timestamp())) for p, at in closed.items()])


@post("/v1/billing/periods/{period:str}/close", summary="Close a billing period (admin)", tags=["Billing"],
      status_code=200, opt=needs(PLATFORM))
async def close_period(period: Period, audit: NamedDependency[AuditTrail],
                       period_closer: NamedDependency[PeriodCloser]) -> Response[Any]:
    """Freeze a period that has ended into one statement per tenant (exact cost, and the amount rounded once
    to minor units). Usage of the period that arrives later is billed as an adjustment in the next open one.
    A period is closed once: closing it again, or closing one that has not ended, is a 409."""
    if next_period(period) > datetime.now(UTC).strftime("%Y-%m"):
        raise Conflict(f"period {period} has not ended yet", param="period", code="period_not_ended")
    statements = await period_closer.close_period(period)
    await audit.record("period.close", period, after={"tenants": len(statements)})
    return Response(_listed(statements))


@get("/v1/billing/periods/{period:str}/statements", summary="A closed period's statements", tags=["Billing"],
     opt=needs(BILLING))
async def list_statements(
    period: Period, principal: NamedDependency[Principal], period_closer: NamedDependency[PeriodCloser],
    tenant: Annotated[str | None, QueryParameter()] = None,
    output: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
) -> Response[Any]:
    """The statements of a closed period: every tenant's (admin) or the caller's own; CSV with ``format=csv``."""
    tenant = tenant_scope(principal, tenant)
    if period not in await period_closer.closed():
        raise NotFound(f"period {period} is not closed", param="period")
    statements = await period_closer.statements(period, tenant)
    if output == "csv":
        return Response(statements_csv(statements), media_type="text/csv; charset=utf-8")
    return Response(_listed(statements))


def _listed(statements: list[Statement]) -> dict[str, Any]:
    return {"object": "list", "data": [{"object": "statement", **s.as_dict()} for s in statements]}


period_handlers = [list_periods, close_period, list_statements]
