"""What each page shows, fetched from the REST API with the signed-in user's client and shaped for a template.

Figures are the API's own: totals and costs are its exact decimal strings (the overview adds some of them up,
exactly, in ``Decimal``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from console.charts import bar_chart
from meterway.sdk import APIError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from meterway.sdk import AsyncClient

USAGE_SERIES = ("model", "key", "endpoint")
BUCKETS = ("day", "hour")  # the ledger's UTC day and hour of each request


async def optional(client: AsyncClient, path: str, params: dict[str, Any] | None = None) -> Any:
    """``GET path``, or None when the key may not read it (so that a page shows what the key may see)."""
    try:
        return await client.request("GET", path, params=params)
    except APIError as exc:
        if exc.status_code in (401, 403, 404):
            return None
        raise


def period_start(now: datetime) -> str:
    return now.replace(day=1).date().isoformat()


async def overview(client: AsyncClient) -> dict[str, Any]:
    """Today's and this month's totals, each key's budget against its spend this month, the models' states.

    One usage report (this month by day and key) gives all three: the lines are exact decimal strings, so
    today's and each key's sums are exact too. The API calls run concurrently.
    """
    now = datetime.now(UTC)
    period, keys, models = await asyncio.gather(
        client.request("GET", "/v1/usage", params={"start": period_start(now), "group_by": "day,key"}),
        optional(client, "/v1/keys"), client.request("GET", "/v1/models"))
    today = _sum(line for line in period["data"] if line["day"] == now.date().isoformat())
    spend: dict[str, Decimal] = {}
    for line in period["data"]:
        spend[line["key"]] = spend.get(line["key"], Decimal(0)) + Decimal(line["cost"])
    budgets = [{"name": key["name"], "id": key["id"], "budget": key["budget_amount"],
                "period": key["budget_period"], "spent": f"{spend.get(key['id'], Decimal(0)):f}"}
               for key in (keys or {}).get("data", []) if key.get("budget_amount")]
    return {"today": {**today, "currency": period["total"]["currency"]}, "period": dict(period["total"]),
            "period_start": period_start(now), "budgets": budgets, "models": models["data"]}


def _sum(lines: Iterable[dict[str, Any]]) -> dict[str, Any]:
    requests, tokens, cost = 0, 0, Decimal(0)
    for line in lines:
        requests, tokens = requests + line["requests"], tokens + line["total_tokens"]
        cost += Decimal(line["cost"])
    return {"requests": requests, "total_tokens": tokens, "cost": f"{cost:f}"}


def usage_query(start: str, end: str, series: str, tenant: str = "", bucket: str = "day") -> dict[str, str]:
    """The ``/v1/usage`` query of the usage page (and of its CSV download: the same); ``tenant`` narrows the
    admin's report (another tenant's is the API's 404 for a tenant key)."""
    series = series if series in USAGE_SERIES else "model"
    if not start:
        start = (datetime.now(UTC) - timedelta(days=13)).date().isoformat()
    query = {"start": start, "end": end, "group_by": f"{bucket if bucket in BUCKETS else 'day'},{series}"}
    return {**query, "tenant": tenant} if tenant else query


async def usage(client: AsyncClient, query: dict[str, str]) -> dict[str, Any]:
    """The report's lines, its total and charts of tokens and cost per day, one series per group."""
    report = await client.request("GET", "/v1/usage", params=query)
    bucket, series = query["group_by"].split(",")
    tokens: dict[str, dict[str, Decimal]] = {}
    costs: dict[str, dict[str, Decimal]] = {}
    for line in report["data"]:
        name = line[series] or "(none)"
        tokens.setdefault(line[bucket], {})[name] = Decimal(line["total_tokens"])
        costs.setdefault(line[bucket], {})[name] = Decimal(line["cost"])
    csv_query = urlencode({"start": query["start"], "end": query["end"], "by": series, "bucket": bucket,
                           **({"tenant": query["tenant"]} if "tenant" in query else {})})
    return {"report": report, "series": series, "bucket": bucket, "query": query, "csv_query": csv_query,
            "tokens_chart": bar_chart(f"Tokens per {bucket} by {series}", tokens),
            "cost_chart": bar_chart(f"Cost per {bucket} by {series}", costs)}


async def lists(client: AsyncClient, **paths: str) -> dict[str, Any]:
    """Each ``name=path`` list the key may read (its ``data``), empty where it may not."""
    found = {}
    for name, path in paths.items():
        body = await optional(client, path)
        found[name] = (body or {}).get("data", []) if isinstance(body, dict) else []
    return found


async def endpoints(client: AsyncClient) -> dict[str, Any]:
    """Endpoints with their deployments; requests, tokens and cost per deployment this month, and charts of
    each deployment's requests and mean latency per day (from usage)."""
    found = await lists(client, endpoints="/v1/endpoints")
    daily = await optional(client, "/v1/usage", {"start": period_start(datetime.now(UTC)),
                                                 "group_by": "day,endpoint,deployment"})
    figures: dict[tuple[str, str], dict[str, Any]] = {}  # the month's totals: exact sums of the days
    requests: dict[tuple[str, str], dict[str, dict[str, Decimal]]] = {}
    latency: dict[tuple[str, str], dict[str, dict[str, Decimal]]] = {}
    for line in (daily or {}).get("data", []):
        at = (line["endpoint"], line["deployment"])
        total = figures.setdefault(at, {"requests": 0, "total_tokens": 0, "cost": "0"})
        total.update(requests=total["requests"] + line["requests"],
                     total_tokens=total["total_tokens"] + line["total_tokens"],
                     cost=f"{Decimal(total['cost']) + Decimal(line['cost']):f}")
        requests.setdefault(at, {})[line["day"]] = {"requests": Decimal(line["requests"])}
        if line.get("mean_latency_ms") is not None:
            latency.setdefault(at, {})[line["day"]] = {"mean latency": Decimal(line["mean_latency_ms"])}
    charts = {at: (bar_chart(f"Requests per day: {at[0]}/{at[1]}", requests[at]),
                   bar_chart(f"Mean latency per day: {at[0]}/{at[1]}", latency.get(at, {}), " ms"))
              for at in requests}
    return {"endpoints": found["endpoints"], "figures": figures, "charts": charts}


async def admin(client: AsyncClient, period: str = "") -> dict[str, Any]:
    """Tenants, both price books, this month's usage per tenant, the closed periods and the statements of
    ``period`` (default: the latest closed one). A finance key sees the parts it may read; 403s leave the rest
    empty."""
    found = await lists(client, tenants="/v1/tenants", prices="/v1/prices", instance_prices="/v1/prices/instances",
                        periods="/v1/billing/periods")
    now = datetime.now(UTC)
    by_tenant = await optional(client, "/v1/usage", {"start": period_start(now), "group_by": "tenant"})
    shown = period or (found["periods"][0]["period"] if found["periods"] else "")
    statements = await optional(client, f"/v1/billing/periods/{shown}/statements") if shown else None
    last_month = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    return {**found, "by_tenant": (by_tenant or {}).get("data", []), "period_start": period_start(now),
            "statement_period": shown, "statements": (statements or {}).get("data", []), "last_month": last_month}
