"""The instance-minute meter: capacity events priced per (model, instance type) and started minute, beside tokens
in the ledger, statements and the Stripe export, and the instance price book's API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import structlog

from billing.bus import decode_event, encode_event
from billing.ledger import LedgerWriter
from billing.ledger_insert import LEDGER_COLUMNS
from billing.periods import PeriodCloser
from billing.prices import PriceBook
from billing.stripe_export import StripeExporter
from billing.stripe_sink import StripeMeterEventSink
from billing.tables import LedgerEntryRow
from billing.wiring import build_billing
from meterway.errors import InvalidRequest, NotFound
from meterway.settings import DatabaseSettings, Settings
from tests.billing.conftest import T0
from tests.billing.helpers import add_tenants, ledger_rows

SMALL = "gpu-small"


def _minute(make_event, minute: int, *, deployment: str = "blue", minutes: int = 1, **fields: object):
    """The capacity event of one instance of deployment support/<deployment> for the minute ``minute``."""
    values: dict[str, object] = {
        "request_id": f"instance:support/{deployment}:0:{minute}", "key_id": f"deployment:support/{deployment}",
        "model": "m", "endpoint": "instances", "endpoint_name": "support", "deployment": deployment,
        "prompt_tokens": 0, "completion_tokens": 0, "instance_minutes": minutes, "instance_type": SMALL,
        "started_at": T0 + timedelta(minutes=minute)}
    return make_event(**{**values, **fields})


async def _book(database) -> PriceBook:
    book = PriceBook(database.sessions, "usd")
    await book.set_price("m", Decimal("2500"), Decimal("7500"), T0 - timedelta(days=60))
    await book.set_instance_price("m", SMALL, Decimal("0.0125"), T0 - timedelta(days=60))
    await book.set_instance_price("m", SMALL, Decimal("0.015"), T0 + timedelta(minutes=2))
    return book


async def test_capacity_events_are_priced_per_minute_at_the_minutes_start(database, make_event) -> None:
    await _book(database)
    long_names = {"endpoint_name": "e" * 32, "deployment": "d" * 32, "key_id": f"deployment:{'e' * 32}/{'d' * 32}"}
    events = [_minute(make_event, minute) for minute in range(4)]
    events += [_minute(make_event, 9, model="ft:m:acme", base_model="m", minutes=3, request_id="ft-9"),
               _minute(make_event, 10, request_id="long-10", **long_names),
               make_event(model="m", prompt_tokens=1, completion_tokens=1)]
    writer = LedgerWriter(database.sessions, "usd")
    assert await writer.write(events) == len(events)
    assert await writer.write([_minute(make_event, 0)]) == 0  # a re-sent minute adds nothing
    rows = {row.request_id: row for row in await ledger_rows(database)}
    assert len(rows) == len(events)
    prices = [rows[f"instance:support/blue:0:{minute}"].per_instance_minute for minute in range(4)]
    assert prices == [Decimal("0.0125")] * 2 + [Decimal("0.015")] * 2  # the price in force at each minute
    fine_tune = rows["ft-9"]  # no price of its own: its base model's, times its 3 minutes, exactly
    assert (fine_tune.instance_minutes, fine_tune.cost) == (3, Decimal("0.045"))
    assert (fine_tune.input_per_million, fine_tune.output_per_million, fine_tune.instance_type) == (0, 0, SMALL)
    assert rows["long-10"].key_id == long_names["key_id"]
    request = rows[events[-1].request_id]
    assert (request.instance_minutes, request.per_instance_minute, request.instance_type) == (0, 0, None)
    assert request.cost == Decimal("0.01")


async def test_an_instance_event_without_a_price_is_recorded_at_zero(database, make_event) -> None:
    await _book(database)
    unpriced = _minute(make_event, 1, instance_type="gpu-huge", minutes=5)
    with structlog.testing.capture_logs() as logs:
        await LedgerWriter(database.sessions, "usd").write([unpriced])
    [row] = await ledger_rows(database)
    assert (row.request_id, row.instance_minutes, row.per_instance_minute, row.cost) == (
        unpriced.request_id, 5, 0, 0)
    assert [(log["event"], log["request_id"], log["log_level"]) for log in logs] == [
        ("usage_without_price", unpriced.request_id, "error")]


async def test_instance_quotes_follow_the_effective_dates_and_the_base_model(database) -> None:
    book = await _book(database)
    assert (await book.instance_quote("m", SMALL, T0)).per_minute == Decimal("0.0125")
    assert (await book.instance_quote("m", SMALL, T0 + timedelta(minutes=2))).per_minute == Decimal("0.015")
    fine_tune = await book.instance_quote("ft:m:acme", SMALL, T0, base_model="m")
    assert (fine_tune.model, fine_tune.per_minute) == ("m", Decimal("0.0125"))
    with pytest.raises(NotFound) as missing:
        await book.instance_quote("m", "gpu-huge", T0)
    assert (missing.value.code, missing.value.param) == ("no_price", "instance_type")
    with pytest.raises(InvalidRequest) as bad:
        await book.set_instance_price("m", "GPU Small", Decimal(1))
    assert bad.value.param == "instance_type"
    assert [(p.instance_type, p.per_minute) for p in await book.list_instance_prices("m")] == [
        (SMALL, Decimal("0.0125")), (SMALL, Decimal("0.015"))]


async def test_a_statement_charges_instance_minutes_beside_tokens_to_the_cent(database, make_event) -> None:
    await _book(database)
    events = [make_event(model="m", tenant="acme", prompt_tokens=1, completion_tokens=1),  # 0.01
              *(_minute(make_event, minute, tenant="acme") for minute in (0, 1)),  # 2 x 0.0125
              _minute(make_event, 5, tenant="acme", minutes=5)]  # 5 x 0.015
    await LedgerWriter(database.sessions, "usd").write(events)
    closer = PeriodCloser(database.sessions)
    [statement] = await closer.close_period("2026-11")
    assert (statement.cost, statement.amount_minor) == (Decimal("0.11"), 11)
    assert (statement.requests, statement.prompt_tokens, statement.instance_minutes) == (1, 1, 7)
    instance_lines = [line for line in statement.lines if line.get("meter") == "instance_minutes"]
    assert instance_lines == [
        {"model": "m", "meter": "instance_minutes", "instance_type": SMALL, "instance_minutes": 2,
         "per_instance_minute": "0.0125", "cost": "0.025"},
        {"model": "m", "meter": "instance_minutes", "instance_type": SMALL, "instance_minutes": 5,
         "per_instance_minute": "0.015", "cost": "0.075"}]
    assert await closer.statements("2026-11") == [statement]


async def test_stripe_gets_instance_minutes_as_their_own_meter_and_reconciles(database, make_event,
                                                                              stripe_server) -> None:
    await _book(database)
    await add_tenants(database, acme="cus_acme")
    writer = LedgerWriter(database.sessions, "usd")
    await writer.write([make_event(tenant="acme", model="m", prompt_tokens=40, completion_tokens=2),
                        *(_minute(make_event, minute, tenant="acme") for minute in range(3)),
                        _minute(make_event, 70, tenant="acme", minutes=4, billable=False)])  # never charged
    sink = StripeMeterEventSink(stripe_server.api_key, stripe_server.url)
    exporter = StripeExporter(database.sessions, sink, "meterway_tokens", "dedicated_minutes")
    [before] = await exporter.reconcile()
    assert (before.ledger_instance_minutes, before.exported_instance_minutes, before.balanced) == (3, 0, False)

    result = await exporter.export()
    assert (result.tokens, result.instance_minutes) == (42, 3)
    assert stripe_server.store.totals("meterway_tokens") == {"cus_acme": 42}
    assert stripe_server.store.totals("dedicated_minutes") == {"cus_acme": 3}
    minutes = [e for e in stripe_server.store.events if e["event_name"] == "dedicated_minutes"]
    assert {e["payload"]["token_type"] for e in minutes} == {"instance_minutes"}
    [after] = await exporter.reconcile()
    assert after.balanced and after.as_dict()["exported_instance_minutes"] == 3

    await writer.write([_minute(make_event, 3, tenant="acme")])  # a late minute in an hour already sent
    assert not (await exporter.reconcile())[0].balanced
    assert (await exporter.export()).instance_minutes == 1
    assert (await exporter.export()).sent == 0
    assert stripe_server.store.totals("dedicated_minutes") == {"cus_acme": 4}
    assert all(line.balanced for line in await exporter.reconcile())
    identifiers = stripe_server.store.identifiers()
    assert len(identifiers) == len(set(identifiers))


async def test_the_instance_meter_event_name_is_a_setting(database, database_url, tmp_path, make_event,
                                                         stripe_server) -> None:
    assert Settings.from_env({}).billing.stripe_instance_meter_event == "meterway_instance_minutes"
    env = {"METERWAY_STRIPE_INSTANCE_METER_EVENT": "dedicated_minutes"}
    settings = Settings.from_env(env, home=tmp_path, database=DatabaseSettings(url=database_url))
    await _book(database)
    await add_tenants(database, acme="cus_acme")
    await LedgerWriter(database.sessions, "usd").write([_minute(make_event, 0, tenant="acme")])
    billing = build_billing(settings, database, sink=StripeMeterEventSink(stripe_server.api_key, stripe_server.url),
                            run_consumer=False)
    try:
        assert billing.exporter is not None and (await billing.exporter.export()).instance_minutes == 1
    finally:
        await billing.bus.close()
    assert stripe_server.store.totals("dedicated_minutes") == {"cus_acme": 1}


def test_every_ledger_column_is_written_and_the_event_carries_the_meter(make_event) -> None:
    columns = {column.name for column in LedgerEntryRow.__table__.columns} - {"id"}
    assert set(LEDGER_COLUMNS) == columns  # every write path (bulk inserts, the SQLite drain) fills them all
    event = _minute(make_event, 1, minutes=2)
    assert decode_event(encode_event(event)) == event
    old = encode_event(make_event()).replace(b',"instance_minutes":0,"instance_type":null', b"")
    assert (decode_event(old).instance_minutes, decode_event(old).instance_type) == (0, None)


async def test_instance_price_api(client) -> None:
    body = {"model": "m", "instance_type": SMALL, "per_minute": "0.0125", "effective_from": "2026-12-01"}
    created = await client.post("/v1/prices/instances", json=body)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in ("object", "instance_type", "per_minute")} == {
        "object": "instance_price", "instance_type": SMALL, "per_minute": "0.0125"}
    assert (await client.post("/v1/prices/instances", json=body)).status_code == 409
    refused = await client.post("/v1/prices/instances", headers={"x-tenant": "t1"}, json={**body, "model": "x"})
    assert refused.status_code == 403
    for wrong, param in (({"instance_type": "GPU_small"}, "instance_type"), ({"instance_type": "a" * 33},
                         "instance_type"), ({"per_minute": "abc"}, "per_minute"), ({"per_minute": 0.5},
                         "per_minute"), ({"model": ""}, "model")):
        answer = await client.post("/v1/prices/instances", json={**body, **wrong})
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, param), wrong
    missing = await client.post("/v1/prices/instances", json={"model": "m", "per_minute": "1"})
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "instance_type")
    await client.post("/v1/prices/instances", json={**body, "model": "n", "instance_type": "gpu-large"})
    listed = (await client.get("/v1/prices/instances", headers={"x-tenant": "t1"})).json()["data"]
    assert [(p["model"], p["instance_type"]) for p in listed] == [("m", SMALL), ("n", "gpu-large")]
    one = (await client.get("/v1/prices/instances", params={"model": "n"})).json()["data"]
    assert [p["per_minute"] for p in one] == ["0.0125"]
    assert (await client.get("/v1/prices")).json()["data"] == []  # the token price book is another book
