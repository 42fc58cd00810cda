"""Prices (with tier) and the usage report through the SDK; usage is compared with chat calls really served."""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING

import openai

if TYPE_CHECKING:
    from meterway import Client
    from meterway.sdk import UsageReport
    from tests.server import ServerProcess

FUTURE = "2099-01-01T00:00:00Z"  # a price from then on changes no bill of this session's other tests
WINDOW = {"start": "2020-01-01", "end": "2100-01-01"}


def test_prices_by_tier(admin: Client) -> None:
    created = admin.prices.create(model="meterway-echo", input_per_million="0.125", output_per_million="0.5",
                                  tier="batch", effective_from=FUTURE)
    assert (created.model, created.tier, created.input_per_million, created.output_per_million) == (
        "meterway-echo", "batch", "0.125", "0.5")
    batch = admin.prices.list(model="meterway-echo", tier="batch")
    assert created in batch and {p.tier for p in batch} == {"batch"}
    assert created not in admin.prices.list(model="meterway-echo", tier="online")


def test_instance_prices(admin: Client) -> None:
    created = admin.prices.create_instance(model="meterway-echo", instance_type="sdk-small", per_minute="0.02",
                                           effective_from=FUTURE)
    assert (created.instance_type, created.per_minute) == ("sdk-small", "0.02")
    assert created in admin.prices.list_instances(model="meterway-echo")


def _report(client: Client, tenant: str, requests: int) -> UsageReport:
    """The tenant's report once the ledger holds ``requests`` requests (the consumer writes it shortly after)."""
    deadline = time.monotonic() + 30
    while True:
        report = client.usage.report(group_by=["tenant", "model"], tenant=tenant, **WINDOW)
        if report.total.get("requests") == requests or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def test_usage_report_matches_what_was_served(server: ServerProcess, admin: Client, tenant: str) -> None:
    chat = openai.OpenAI(base_url=f"{server.url}/v1", api_key=str(server.create_key(tenant)["secret"]),
                         max_retries=0)
    replies = [chat.chat.completions.create(model="meterway-echo", max_tokens=n,
                                            messages=[{"role": "user", "content": "one two three four"}])
               for n in (2, 3)]
    report = _report(admin, tenant, requests=2)
    [line] = report.data
    assert (line["tenant"], line["model"], line["requests"]) == (tenant, "meterway-echo", 2)
    assert line["prompt_tokens"] == sum(r.usage.prompt_tokens for r in replies if r.usage)
    assert line["completion_tokens"] == sum(r.usage.completion_tokens for r in replies if r.usage)
    assert report.group_by == ["tenant", "model"] and report.tenant == tenant
    rows = list(csv.DictReader(io.StringIO(admin.usage.csv(group_by="tenant,model", tenant=tenant, **WINDOW))))
    assert [(r["tenant"], r["model"], r["requests"], r["cost"]) for r in rows] == [
        (tenant, "meterway-echo", "2", line["cost"])]
