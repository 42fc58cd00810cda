"""Usage reports: every group_by combination equals the ledger to the last digit; tenants see their own."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from billing.ledger import LedgerWriter
from billing.prices import PriceBook
from billing.reports import GROUPS, UsageQuery, UsageReports
from billing.wiring import build_billing
from meterway.db import Database
from meterway.errors import MeterwayError
from service.auth import Principal
from service.routes.billing import billing_dependencies, billing_handlers
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows, total_cost

COMBOS = [combo for n in range(len(GROUPS) + 1) for combo in itertools.combinations(GROUPS, n)]


async def _load(database, make_event) -> list[Any]:
    """Three tenants, keys, two models, a price change mid-way, four days, one mirrored request."""
    book = PriceBook(database.sessions, "usd")
    await book.set_price("a", Decimal("0.05"), Decimal("0.10"), T0 - timedelta(days=30))
    await book.set_price("a", Decimal("0.07"), Decimal("0.11"), T0 + timedelta(days=2))
    await book.set_price("b", Decimal("1.3"), Decimal("2.9"), T0 - timedelta(days=30))
    events = [make_event(tenant=f"t{i % 3}", key_id=f"k{i % 5}", model="ab"[i % 2],
                         started_at=T0 + timedelta(hours=7 * i), prompt_tokens=13 * i + 1,
                         completion_tokens=(17 * i) % 101)
              for i in range(14)]
    events.append(make_event(tenant="t0", model="a", billable=False, prompt_tokens=10**6))
    await LedgerWriter(database.sessions, "usd").write(events)
    return await ledger_rows(database)


async def test_every_group_by_combination_equals_the_ledger(database, make_event) -> None:
    rows = await _load(database, make_event)
    reports = UsageReports(database.sessions)
    for combo in COMBOS:
        # Grouped by ``billable``, a report also shows the mirrored entry (its cost: 0); otherwise only billable ones.
        billable = [row for row in rows if row.billable or "billable" in combo]
        report = await reports.report(UsageQuery(group_by=combo))
        assert report.total.cost == total_cost(rows), combo
        assert sum(line.cost for line in report.lines) == total_cost(rows), combo
        assert report.total.prompt_tokens == sum(row.prompt_tokens for row in billable), combo
        assert sum(line.requests for line in report.lines) == len(billable), combo
        parsed = list(csv.DictReader(io.StringIO(report.as_csv())))
        assert sum(Decimal(line["cost"]) for line in parsed) == total_cost(rows), combo
        completions = sum(r.completion_tokens for r in billable)
        assert sum(int(line["completion_tokens"]) for line in parsed) == completions
        data = report.as_json()["data"]
        assert sum(Decimal(line["cost"]) for line in data) == Decimal(report.as_json()["total"]["cost"])
        if "billable" in combo:
            assert {line["cost"] for line in data if line["billable"] == "false"} == {"0"}, combo


async def test_report_lines_match_the_ledger_per_group_and_window(database, make_event) -> None:
    rows = await _load(database, make_event)
    start, end = T0 + timedelta(days=1), T0 + timedelta(days=3)
    report = await UsageReports(database.sessions).report(
        UsageQuery(start=start, end=end, group_by=("tenant", "model")))
    for line in report.lines:
        mine = [r for r in rows if r.billable and r.tenant == line.group["tenant"] and
                r.model == line.group["model"] and start <= r.started_at.replace(tzinfo=start.tzinfo) < end]
        assert line.cost == total_cost(mine)
        assert line.requests == len(mine)


def _app(billing) -> Litestar:
    async def principal(request: Request[Any, Any, Any]) -> Principal:
        tenant = request.headers.get("x-tenant")  # test stand-in for the gateway's key authentication
        return Principal(tenant=tenant, key_id="k", is_admin=tenant is None)

    def errors(_request: Request[Any, Any, Any], exc: MeterwayError) -> Any:
        from litestar import Response

        return Response(exc.body(), status_code=exc.status)

    return Litestar(route_handlers=billing_handlers,
                    dependencies={"principal": Provide(principal), **billing_dependencies(billing)},
                    exception_handlers={MeterwayError: errors})


@pytest.fixture
async def client(settings):
    # The test client runs the app on its own event loop: give it its own, unpooled engine.
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    app_database = Database(engine, async_sessionmaker(engine, expire_on_commit=False))
    async with AsyncTestClient(_app(build_billing(settings, app_database))) as test_client:
        yield test_client
    await engine.dispose()


async def test_http_usage_report_json_and_csv_equal_the_ledger(client, database, make_event) -> None:
    rows = await _load(database, make_event)
    for combo in (("day",), ("day", "model", "key", "tenant"), ()):
        group_by = ",".join(combo)
        body = (await client.get("/v1/usage", params={"group_by": group_by})).json()
        assert Decimal(body["total"]["cost"]) == total_cost(rows)
        response = await client.get("/v1/usage", params={"group_by": group_by, "format": "csv"})
        assert response.headers["content-type"].startswith("text/csv")
        lines = list(csv.DictReader(io.StringIO(response.text)))
        assert sum(Decimal(line["cost"]) for line in lines) == total_cost(rows)


async def test_a_tenant_sees_only_its_own_usage(client, database, make_event) -> None:
    rows = await _load(database, make_event)
    mine = await client.get("/v1/usage", params={"group_by": "tenant,key"}, headers={"x-tenant": "t1"})
    body = mine.json()
    assert {line["tenant"] for line in body["data"]} == {"t1"}
    assert Decimal(body["total"]["cost"]) == total_cost([r for r in rows if r.tenant == "t1"])
    other = await client.get("/v1/usage", params={"tenant": "t2"}, headers={"x-tenant": "t1"})
    assert other.status_code == 404
    admin_view = (await client.get("/v1/usage", params={"tenant": "t2", "group_by": "tenant"})).json()
    assert [line["tenant"] for line in admin_view["data"]] == ["t2"]


async def test_price_admin_api(client) -> None:
    created = await client.post("/v1/prices", json={"model": "m", "input_per_million": "0.125",
                                                    "output_per_million": "0.5",
                                                    "effective_from": "2026-12-01"})
    assert created.status_code == 201, created.text
    assert created.json()["input_per_million"] == "0.125"
    refused = await client.post("/v1/prices", headers={"x-tenant": "t1"},
                                json={"model": "m", "input_per_million": "0", "output_per_million": "0"})
    assert refused.status_code == 403
    not_a_number = await client.post("/v1/prices", json={"model": "m", "input_per_million": "abc",
                                                         "output_per_million": "1"})
    assert not_a_number.status_code == 400
    listed = (await client.get("/v1/prices", headers={"x-tenant": "t1"})).json()["data"]
    assert [(p["model"], p["output_per_million"]) for p in listed] == [("m", "0.5")]


async def test_an_empty_report_is_in_the_price_books_currency(database) -> None:
    report = await UsageReports(database.sessions, "eur").report(UsageQuery(group_by=("day",)))
    assert report.lines == [] and report.as_json()["total"]["currency"] == "eur"
    assert report.as_json()["total"]["cost"] in ("0", "0.00", "0.000000")
