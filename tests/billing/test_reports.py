"""Usage reports: every group_by combination equals the ledger to the last digit, tokens and instance-minutes
alike; tenants see their own."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

from billing.ledger import LedgerWriter
from billing.prices import PriceBook
from billing.reports import GROUPS, UsageQuery, UsageReports
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows, total_cost

COMBOS = [combo for n in range(len(GROUPS) + 1) for combo in itertools.combinations(GROUPS, n)]


async def _load(database, make_event) -> list[Any]:
    """Three tenants, keys, two models, a price change mid-way, four days, one mirrored request; instance-minutes
    of two instance types (one with a price change too)."""
    book = PriceBook(database.sessions, "usd")
    await book.set_price("a", Decimal("0.05"), Decimal("0.10"), T0 - timedelta(days=30))
    await book.set_price("a", Decimal("0.07"), Decimal("0.11"), T0 + timedelta(days=2))
    await book.set_price("b", Decimal("1.3"), Decimal("2.9"), T0 - timedelta(days=30))
    await book.set_instance_price("a", "gpu-small", Decimal("0.0137"), T0 - timedelta(days=30))
    await book.set_instance_price("a", "gpu-small", Decimal("0.0141"), T0 + timedelta(days=1))
    await book.set_instance_price("b", "gpu-large", Decimal("0.21"), T0 - timedelta(days=30))
    events = [make_event(tenant=f"t{i % 3}", key_id=f"k{i % 5}", model="ab"[i % 2],
                         started_at=T0 + timedelta(hours=7 * i), prompt_tokens=13 * i + 1,
                         completion_tokens=(17 * i) % 101)
              for i in range(14)]
    events.append(make_event(tenant="t0", model="a", billable=False, prompt_tokens=10**6))
    events += [make_event(tenant=f"t{i % 2}", key_id=f"deployment:e{i % 2}/blue", model="ab"[i % 2],
                          endpoint="instances", endpoint_name=f"e{i % 2}", deployment="blue", prompt_tokens=0,
                          completion_tokens=0, instance_minutes=1 + i % 3,
                          instance_type=("gpu-small", "gpu-large")[i % 2],
                          started_at=T0 + timedelta(hours=5 * i)) for i in range(12)]
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
        assert report.total.instance_minutes == sum(row.instance_minutes for row in billable), combo
        # Capacity entries are instance-minutes, not requests.
        requests = len([row for row in billable if row.instance_minutes == 0])
        assert sum(line.requests for line in report.lines) == requests, combo
        parsed = list(csv.DictReader(io.StringIO(report.as_csv())))
        assert sum(Decimal(line["cost"]) for line in parsed) == total_cost(rows), combo
        completions = sum(r.completion_tokens for r in billable)
        assert sum(int(line["completion_tokens"]) for line in parsed) == completions
        assert sum(int(line["instance_minutes"]) for line in parsed) == report.total.instance_minutes
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
        assert line.requests == len([r for r in mine if r.instance_minutes == 0])
        assert line.instance_minutes == sum(r.instance_minutes for r in mine)


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


async def test_a_report_by_meter_splits_tokens_from_instance_minutes(database, make_event) -> None:
    rows = await _load(database, make_event)
    report = await UsageReports(database.sessions).report(UsageQuery(group_by=("meter", "instance_type")))
    lines = {(line.group["meter"], line.group["instance_type"]): line for line in report.lines}
    assert set(lines) == {("tokens", ""), ("instance_minutes", "gpu-small"), ("instance_minutes", "gpu-large")}
    tokens = [r for r in rows if r.billable and r.instance_minutes == 0]
    assert (lines["tokens", ""].requests, lines["tokens", ""].cost) == (len(tokens), total_cost(tokens))
    assert lines["tokens", ""].instance_minutes == 0
    for instance_type in ("gpu-small", "gpu-large"):
        mine = [r for r in rows if r.instance_type == instance_type]
        line = lines["instance_minutes", instance_type]
        assert (line.requests, line.prompt_tokens, line.completion_tokens) == (0, 0, 0)
        assert line.instance_minutes == sum(r.instance_minutes for r in mine)
        assert line.cost == sum((r.instance_minutes * r.per_instance_minute for r in mine), Decimal(0))
    assert sum(line.cost for line in report.lines) == report.total.cost == total_cost(rows)
    header = report.as_csv().splitlines()[0].split(",")
    assert header[:3] == ["meter", "instance_type", "requests"] and "instance_minutes" in header


async def test_an_empty_report_is_in_the_price_books_currency(database) -> None:
    report = await UsageReports(database.sessions, "eur").report(UsageQuery(group_by=("day",)))
    assert report.lines == [] and report.as_json()["total"]["currency"] == "eur"
    assert report.as_json()["total"]["cost"] in ("0", "0.00", "0.000000")
