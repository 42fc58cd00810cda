"""Billing routes: the price book (``/v1/prices``) and usage reports (``/v1/usage``); decode, call, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from msgspec import Meta

from billing.money import Price, format_decimal, parse_amount
from billing.prices import PriceBook
from billing.reports import GROUPS, UsageQuery, UsageReports, parse_bound, parse_group_by
from meterway.errors import NotFound, PermissionDenied
from service.auth import Principal
from service.http.fields import MOMENT_FORMS, Body, ModelId, Moment, PricePerMillion

if TYPE_CHECKING:
    from billing.wiring import Billing


class PriceCreate(Body, kw_only=True):
    model: ModelId
    input_per_million: PricePerMillion  # decimal strings: money never travels as a float
    output_per_million: PricePerMillion
    effective_from: Moment | Annotated[int, Meta(ge=0, le=99_999_999_999)] | None = None  # default: now


_GROUP = f"({'|'.join(GROUPS)})"
GROUP_BY = rf"^({_GROUP}(,{_GROUP}){{0,{len(GROUPS) - 1}}})?$"  # empty: the total only
MOMENT_QUERY = {"anyOf": [{"maxLength": 0}, *MOMENT_FORMS]}  # empty: unbounded


class PriceView(msgspec.Struct, kw_only=True):
    object: str = "price"
    model: str
    input_per_million: str
    output_per_million: str
    currency: str
    effective_from: int


class PriceList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[PriceView]


def _view(price: Price) -> PriceView:
    return PriceView(model=price.model, input_per_million=format_decimal(price.input_per_million),
                     output_per_million=format_decimal(price.output_per_million), currency=price.currency,
                     effective_from=int(price.effective_from.timestamp()))


@get("/v1/prices", summary="List the price book", tags=["Billing"])
async def list_prices(principal: NamedDependency[Principal], price_book: NamedDependency[PriceBook],
                      model: Annotated[str | None, QueryParameter()] = None) -> PriceList:
    """Every price entry (per 1M input / output tokens), oldest first; each applies until the next."""
    return PriceList(data=[_view(p) for p in await price_book.list(model)])


@post("/v1/prices", summary="Add a price (admin)", tags=["Billing"], status_code=201)
async def create_price(data: JSONBody[PriceCreate], principal: NamedDependency[Principal],
                       price_book: NamedDependency[PriceBook]) -> PriceView:
    """Append a price for a model from ``effective_from`` on; entries already written keep their price."""
    if not principal.is_admin:
        raise PermissionDenied("This route needs the platform admin key.")
    start = None if data.effective_from is None else parse_bound(str(data.effective_from), "effective_from")
    price = await price_book.set_price(data.model, parse_amount(data.input_per_million, "input_per_million"),
                                       parse_amount(data.output_per_million, "output_per_million"), start)
    return _view(price)


@get("/v1/usage", summary="Usage report", tags=["Billing"])
async def usage_report(
    principal: NamedDependency[Principal], usage_reports: NamedDependency[UsageReports],
    start: Annotated[str, QueryParameter(schema_extra=MOMENT_QUERY)] = "",
    end: Annotated[str, QueryParameter(schema_extra=MOMENT_QUERY)] = "",
    group_by: Annotated[str, QueryParameter(pattern=GROUP_BY)] = "day,model",
    output: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
    tenant: Annotated[str | None, QueryParameter()] = None,
) -> Response[Any]:
    """Billable usage between ``start`` and ``end`` grouped by day/model/key/tenant; a tenant sees its own."""
    if not principal.is_admin:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"tenant '{tenant}' not found", param="tenant")
        tenant = principal.billing_tenant
    query = UsageQuery(parse_bound(start, "start"), parse_bound(end, "end"), parse_group_by(group_by), tenant)
    report = await usage_reports.report(query)
    if output == "csv":
        return Response(report.as_csv(), media_type="text/csv; charset=utf-8")
    return Response(report.as_json())


billing_handlers = [list_prices, create_price, usage_report]


def billing_dependencies(billing: Billing) -> dict[str, Provide]:
    """What the billing handlers take: ``price_book`` and ``usage_reports``."""
    return {"price_book": Provide(lambda: billing.prices, use_cache=True, sync_to_thread=False),
            "usage_reports": Provide(lambda: billing.reports, use_cache=True, sync_to_thread=False)}
