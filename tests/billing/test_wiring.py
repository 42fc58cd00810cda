"""Billing as the server runs it: ``build_billing`` + ``start``: background consumer and scheduled export."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from sqlalchemy import text

from billing.wiring import build_billing
from models.catalog import load_catalog
from tests.billing.helpers import ledger_rows


async def test_recorded_usage_reaches_the_ledger_and_stripe_in_the_background(settings, database, make_event,
                                                                               stripe_server) -> None:
    billing_settings = dataclasses.replace(settings.billing, stripe_api_key=stripe_server.api_key,
                                           stripe_api_base=stripe_server.url, stripe_export_interval_s=0.2,
                                           consumer_interval_s=0.05)
    billing = build_billing(dataclasses.replace(settings, billing=billing_settings), database)
    async with database.sessions() as session, session.begin():
        await session.execute(text("INSERT INTO tenants (id, created_at) VALUES ('acme', :at)"),
                              {"at": datetime.now(UTC)})
    await billing.link_stripe_customer("acme", "cus_acme")
    await billing.start(load_catalog())
    try:
        events = [make_event() for _ in range(50)]
        await billing.meter.ensure_available()
        await asyncio.gather(*(billing.meter.record(event) for event in events))
        tokens = sum(e.prompt_tokens + e.completion_tokens for e in events)
        async with asyncio.timeout(60):  # liveness bound
            while stripe_server.store.totals().get("cus_acme", 0) < tokens:
                await asyncio.sleep(0.1)
    finally:
        await billing.stop()
    assert len(await ledger_rows(database)) == 50
    assert stripe_server.store.totals() == {"cus_acme": tokens}
    assert all(line.balanced for line in await billing.exporter.reconcile())  # type: ignore[union-attr]
    catalog_price = await billing.prices.quote("smollm2-135m-instruct")
    assert str(catalog_price.input_per_million).startswith("0.05")


async def test_backlog_counts_events_until_the_ledger_has_them(settings, database, make_event) -> None:
    billing = build_billing(settings, database, run_consumer=False)
    for _ in range(7):
        await billing.meter.record(make_event())
    assert await billing.backlog() == 7
    assert await billing.consumer.drain() == 7
    assert await billing.backlog() == 0
    await billing.stop()
