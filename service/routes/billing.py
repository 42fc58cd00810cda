"""Billing routes: the price books (``/v1/prices``, tiers online and batch; ``/v1/prices/instances``) and usage
reports (``/v1/usage``); decode, call, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from msgspec import Meta

from billing.money import InstancePrice, Price, format_decimal, parse_amount
from billing.prices import INSTANCE_TYPE_PATTERN, PriceBook
from billing.reports import GROUPS, UsageQuery, UsageReports, parse_bound, parse_group_by
from meterway.errors import NotFound
from meterway.roles import BILLING, PLATFORM
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.fields import MOMENT_FORMS, Body, ModelId, Moment, PricePerMillion

if TYPE_CHECKING:
    from datetime import datetime

    from billing.wiring import Billing


Tier = Literal["online", "batch"]  # online: requests; batch: the lines of batch jobs


class PriceCreate(Body, kw_only=True):
    model: ModelId
    input_per_million: PricePerMillion  # decimal strings: money never travels as a float
    output_per_million: PricePerMillion
    effective_from: Moment | Annotated[int, Meta(ge=0, le=99_999_999_999)] | None = None  # default: now
    tier: Tier = "online"


InstanceType = Annotated[str, Meta(pattern=INSTANCE_TYPE_PATTERN,
                                   description="1-32 lower-case letters, digits or '-'")]


class InstancePriceCreate(Body, kw_only=True):
    model: ModelId
    instance_type: InstanceType
    per_minute: PricePerMillion  # a decimal string per started instance-minute
    effective_from: Moment | Annotated[int, Meta(ge=0, le=99_999_999_999)] | None = None  # default: now


_GROUP = f"({'|'.join(GROUPS)})"
GROUP_BY = rf"^({_GROUP}(,{_GROUP}){{0,{len(GROUPS) - 1}}})?$"  # empty: the total only
MOMENT_QUERY = {"anyOf": [{"maxLength": 0}, *MOMENT_FORMS]}  # empty: unbounded


class PriceView(msgspec.Struct, kw_only=True):
    object: str = "price"
    model: str
    tier: str
    input_per_million: str
    output_per_million: str
    currency: str
    effective_from: int


class PriceList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[PriceView]


class InstancePriceView(msgspec.Struct, kw_only=True):
    object: str = "instance_price"
    model: str
    instance_type: str
    per_minute: str
    currency: str
    effective_from: int


class InstancePriceList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[InstancePriceView]


def _instance_view(price: InstancePrice) -> InstancePriceView:
    return InstancePriceView(model=price.model, instance_type=price.instance_type,
                             per_minute=format_decimal(price.per_minute), currency=price.currency,
                             effective_from=int(price.effective_from.timestamp()))


def _start(effective_from: str | int | None) -> datetime | None:
    return None if effective_from is None else parse_bound(str(effective_from), "effective_from")


def _view(price: Price) -> PriceView:
    return PriceView(model=price.model, tier=price.tier, input_per_million=format_decimal(price.input_per_million),
                     output_per_million=format_decimal(price.output_per_million), currency=price.currency,
                     effective_from=int(price.effective_from.timestamp()))


@get("/v1/prices", summary="List the price book", tags=["Billing"], opt=needs(BILLING))
async def list_prices(principal: NamedDependency[Principal], price_book: NamedDependency[PriceBook],
                      model: Annotated[str | None, QueryParameter()] = None,
                      tier: Annotated[Tier | None, QueryParameter()] = None) -> PriceList:
    """Every price entry (per 1M input / output tokens) of both tiers or of ``tier``, by model and tier, oldest
    first; each applies until the next of the same model and tier. A batch job's lines are billed at the batch
    price, or at the online price where the model has no batch entry."""
    return PriceList(data=[_view(p) for p in await price_book.list(model, tier)])


@post("/v1/prices", summary="Add a price (admin)", tags=["Billing"], status_code=201, opt=needs(PLATFORM))
async def create_price(data: JSONBody[PriceCreate], audit: NamedDependency[AuditTrail],
                       price_book: NamedDependency[PriceBook]) -> PriceView:
    """Append a price for a model in a tier (``online`` by default, or ``batch``) from ``effective_from`` on;
    entries already written keep their price."""
    price = await price_book.set_price(data.model, parse_amount(data.input_per_million, "input_per_million"),
                                       parse_amount(data.output_per_million, "output_per_million"),
                                       _start(data.effective_from), data.tier)
    view = _view(price)
    await audit.record("price.create", f"{price.model}/{price.tier}", after=msgspec.structs.asdict(view))
    return view


@get("/v1/prices/instances", summary="List the instance price book", tags=["Billing"], opt=needs(BILLING))
async def list_instance_prices(principal: NamedDependency[Principal], price_book: NamedDependency[PriceBook],
                               model: Annotated[str | None, QueryParameter()] = None) -> InstancePriceList:
    """Every price per instance-minute (per model and instance type), oldest first; each applies until the
    next entry of the same model and instance type."""
    return InstancePriceList(data=[_instance_view(p) for p in await price_book.list_instance_prices(model)])


@post("/v1/prices/instances", summary="Add an instance price (admin)", tags=["Billing"], status_code=201,
      opt=needs(PLATFORM))
async def create_instance_price(data: JSONBody[InstancePriceCreate], audit: NamedDependency[AuditTrail],
                                price_book: NamedDependency[PriceBook]) -> InstancePriceView:
    """Append a price per started instance-minute of a model on an instance type from ``effective_from`` on;
    a fine-tune without its own uses its base model's."""
    price = await price_book.set_instance_price(data.model, data.instance_type,
                                                parse_amount(data.per_minute, "per_minute"),
                                                _start(data.effective_from))
    view = _instance_view(price)
    await audit.record("instance_price.create", f"{price.model}/{price.instance_type}",
                       after=msgspec.structs.asdict(view))
    return view


def tenant_scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant a finance read covers: the one asked for (None: all) for the admin, the caller's own otherwise
    (another tenant's is a 404, as if it did not exist)."""
    if principal.is_admin:
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise NotFound(f"tenant '{tenant}' not found", param="tenant")
    return principal.billing_tenant


@get("/v1/usage", summary="Usage report", tags=["Billing"], opt=needs(BILLING))
async def usage_report(
    principal: NamedDependency[Principal], usage_reports: NamedDependency[UsageReports],
    start: Annotated[str, QueryParameter(schema_extra=MOMENT_QUERY)] = "",
    end: Annotated[str, QueryParameter(schema_extra=MOMENT_QUERY)] = "",
    group_by: Annotated[str, QueryParameter(pattern=GROUP_BY)] = "day,model",
    output: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
    tenant: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    """Billable usage between ``start`` and ``end`` grouped by day/model/key/tenant; a tenant sees its own."""
    query = UsageQuery(parse_bound(start, "start"), parse_bound(end, "end"), parse_group_by(group_by),
                       tenant_scope(principal, tenant))
    report = await usage_reports.report(query)
    if output == "csv":
        return Response(report.as_csv(), media_type="text/csv; charset=utf-8")
    return Response(report.as_json())


billing_handlers = [list_prices, create_price, list_instance_prices, create_instance_price, usage_report]


def billing_dependencies(billing: Billing) -> dict[str, Provide]:
    """What the billing handlers take: ``price_book``, ``usage_reports`` and (the periods' routes)
    ``period_closer``."""
    return {"price_book": Provide(lambda: billing.prices, use_cache=True, sync_to_thread=False),
            "period_closer": Provide(lambda: billing.periods, use_cache=True, sync_to_thread=False),
            "usage_reports": Provide(lambda: billing.reports, use_cache=True, sync_to_thread=False)}
