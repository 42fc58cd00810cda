"""Stripe export through the real ``stripe`` SDK against a local Stripe-compatible server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from billing.ledger import LedgerWriter
from billing.prices import PriceBook
from billing.stripe_export import StripeExporter, link_stripe_customer
from billing.stripe_sink import MeterEvent, StripeMeterEventSink
from meterway.errors import NotFound
from tests.billing.conftest import T0
from tests.billing.helpers import add_tenants as _tenants
from tests.billing.helpers import ledger_rows


class SimulatedCrash(Exception):
    """The exporter 'dies' after Stripe accepted an event and before the export was recorded."""


class CrashingSink:
    """Sends through the real sink, then crashes after ``after`` events."""

    def __init__(self, sink: StripeMeterEventSink, after: int) -> None:
        self._sink, self._left = sink, after

    async def send(self, event: MeterEvent) -> None:
        await self._sink.send(event)
        self._left -= 1
        if self._left == 0:
            raise SimulatedCrash(event.identifier)


async def _usage(database, make_event, hours: range, **fields: object) -> None:
    await PriceBook(database.sessions, "usd").seed([])
    await LedgerWriter(database.sessions, "usd").write(
        [make_event(tenant=tenant, model=model, started_at=T0 + timedelta(hours=h, minutes=7 * i),
                    prompt_tokens=5 + h + i, completion_tokens=3 * i, **fields)
         for h in hours for i in range(3) for tenant in ("acme", "beta", "gamma") for model in ("a", "b")])


def _ledger_tokens(rows, tenant: str) -> int:
    return sum(r.prompt_tokens + r.completion_tokens for r in rows if r.tenant == tenant and r.billable)


@pytest.mark.battery(8)
async def test_export_crash_before_recording_then_again_matches_the_ledger(database, make_event,
                                                                            stripe_server) -> None:
    await _tenants(database, acme="cus_acme", beta="cus_beta", gamma=None)
    await _usage(database, make_event, range(4))
    await _usage(database, make_event, range(1), billable=False)  # mirrored: never charged
    sink = StripeMeterEventSink(stripe_server.api_key, stripe_server.url)

    with pytest.raises(SimulatedCrash):
        await StripeExporter(database.sessions, CrashingSink(sink, after=5), "meterway_tokens").export()
    exporter = StripeExporter(database.sessions, sink, "meterway_tokens")
    result = await exporter.export()
    assert result.already_there == 1  # the event sent just before the crash was not sent twice

    rows = await ledger_rows(database)
    assert stripe_server.store.totals() == {"cus_acme": _ledger_tokens(rows, "acme"),
                                           "cus_beta": _ledger_tokens(rows, "beta")}
    identifiers = stripe_server.store.identifiers()
    assert len(identifiers) == len(set(identifiers))
    assert all(line.balanced for line in await exporter.reconcile())

    # Late usage in hours already exported goes out under new identifiers; a repeat run sends nothing.
    await _usage(database, make_event, range(2, 6))
    second = await exporter.export()
    assert second.sent > 0 and second.already_there == 0
    assert (await exporter.export()).sent == 0
    rows = await ledger_rows(database)
    assert stripe_server.store.totals()["cus_acme"] == _ledger_tokens(rows, "acme")
    assert len(stripe_server.store.identifiers()) == len(set(stripe_server.store.identifiers()))
    gamma = next(line for line in await exporter.reconcile() if line.tenant == "gamma")
    assert (gamma.stripe_customer_id, gamma.exported_tokens) == (None, 0)


async def test_usage_older_than_stripe_accepts_is_stamped_inside_the_window(database, make_event,
                                                                            stripe_server) -> None:
    await _tenants(database, acme="cus_acme")
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=60)
    await LedgerWriter(database.sessions, "usd").write([make_event(tenant="acme", started_at=old)])
    sink = StripeMeterEventSink(stripe_server.api_key, stripe_server.url)
    exporter = StripeExporter(database.sessions, sink, "meterway_tokens")
    assert (await exporter.export()).sent == 2
    assert stripe_server.store.totals() == {"cus_acme": 18}


async def test_linking_an_unknown_tenant_is_not_found(database) -> None:
    with pytest.raises(NotFound):
        await link_stripe_customer(database.sessions, "nobody", "cus_x")


@pytest.mark.battery(8)
def test_local_stripe_server_applies_stripes_rules(stripe_server) -> None:
    client = stripe.StripeClient(stripe_server.api_key, base_addresses={"api": stripe_server.url},
                                 max_network_retries=0)
    now = int(time.time())
    params = {"event_name": "e", "identifier": "id-1", "timestamp": now,
              "payload": {"stripe_customer_id": "cus_1", "value": "25"}}
    event = client.v1.billing.meter_events.create(params=params)
    assert (event.identifier, event.payload["value"]) == ("id-1", "25")
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        client.v1.billing.meter_events.create(params=params)
    assert duplicate.value.param == "identifier"
    for stamp in (now - 36 * 24 * 3600, now + 600):
        with pytest.raises(stripe.InvalidRequestError):
            out_of_window = {**params, "identifier": f"t{stamp}", "timestamp": stamp}
            client.v1.billing.meter_events.create(params=out_of_window)
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_test_wrong", base_addresses={"api": stripe_server.url},
                            max_network_retries=0).v1.billing.meter_events.create(params=params)
    assert stripe_server.store.totals() == {"cus_1": 25}
    assert Decimal(25) == sum(Decimal(v) for v in stripe_server.store.totals().values())
