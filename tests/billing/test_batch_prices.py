"""The batch tier of the token price book: batch lines are billed at the model's batch price in force at their
start (the base model's for a fine-tune), at the online price where there is none, on every write path."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.bus import BusOptions
from billing.consumer import LedgerConsumer
from billing.ledger import LedgerWriter
from billing.local_bus import LocalOutboxBus
from billing.prices import PriceBook
from meterway.errors import Conflict, InvalidRequest, NotFound
from service.pricing import BookQuotes
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows

DAY = timedelta(days=1)
_PRICED = ("input_per_million", "output_per_million", "cost", "batch_id")


async def _book(database) -> PriceBook:
    """Online 2 / 4 for 'm' and 'base', batch 1 / 2 for 'base' and 'm' (which halves again at T0)."""
    book = PriceBook(database.sessions, "usd")
    for model in ("m", "base", "online-only"):
        await book.set_price(model, Decimal("2"), Decimal("4"), T0 - 30 * DAY)
    for model in ("m", "base"):
        await book.set_price(model, Decimal("1"), Decimal("2"), T0 - 30 * DAY, tier="batch")
    await book.set_price("m", Decimal("0.5"), Decimal("1"), T0, tier="batch")
    return book


async def test_batch_entries_are_effective_dated_per_tier(database) -> None:
    book = await _book(database)
    before = await book.quote("m", T0 - timedelta(microseconds=1), tier="batch")
    after = await book.quote("m", T0, tier="batch")
    assert (before.tier, before.input_per_million, after.input_per_million) == ("batch", Decimal("1"),
                                                                                Decimal("0.5"))
    assert (await book.quote("m", T0 + DAY)).input_per_million == Decimal("2")  # the online book is apart
    fallback = await book.quote("online-only", T0, tier="batch")
    assert (fallback.tier, fallback.input_per_million) == ("online", Decimal("2"))
    with pytest.raises(NotFound):
        await book.quote("m", T0 - 31 * DAY, tier="batch")  # nothing in force yet, in either tier
    with pytest.raises(Conflict):
        await book.set_price("m", Decimal("9"), Decimal("9"), T0, tier="batch")
    with pytest.raises(InvalidRequest, match="tier"):
        await book.set_price("m", Decimal("9"), Decimal("9"), T0, tier="bulk")
    assert [(p.tier, p.effective_from) for p in await book.list("m")] == [
        ("batch", T0 - 30 * DAY), ("batch", T0), ("online", T0 - 30 * DAY)]
    assert {p.model for p in await book.list(tier="batch")} == {"m", "base"}
    assert {p.model for p in await book.list(tier="online")} == {"m", "base", "online-only"}


def _batch_lines(make_event) -> list:
    """One line of each shape: batch before and after the change, a fine-tune's, a model without batch
    price, an online request, and a batch line of a model without any price."""
    line = {"batch_id": "batch_1", "endpoint": "batch", "prompt_tokens": 1_000_000, "completion_tokens": 500_000}
    return [make_event(model="m", started_at=T0 - timedelta(seconds=1), **line),
            make_event(model="m", started_at=T0, **line),
            make_event(model="ft:base:acme", base_model="base", **line),
            make_event(model="online-only", **line),
            make_event(model="m", prompt_tokens=1_000_000, completion_tokens=500_000),
            make_event(model="unpriced", **line)]


def _check_batch_costs(rows: dict, events: list) -> None:
    costs = [(rows[e.request_id].input_per_million, rows[e.request_id].cost) for e in events]
    assert costs == [(Decimal("1"), Decimal("2")),  # batch, before the change: 1 + 0.5 x 2
                     (Decimal("0.5"), Decimal("1")),  # batch from T0 on
                     (Decimal("1"), Decimal("2")),  # the base model's batch price
                     (Decimal("2"), Decimal("4")),  # no batch entry: the online price, never unbilled
                     (Decimal("2"), Decimal("4")),  # an online request of 'm'
                     (Decimal("0"), Decimal("0"))]  # no price at all: recorded at zero, as online requests


async def test_a_batch_line_is_billed_at_the_batch_price_in_force_at_its_start(database, make_event) -> None:
    await _book(database)
    events = _batch_lines(make_event)
    await LedgerWriter(database.sessions, "usd").write(events)
    rows = {row.request_id: row for row in await ledger_rows(database)}
    _check_batch_costs(rows, events)
    assert rows[events[0].request_id].output_per_million == Decimal("2")


async def test_the_bus_consumer_bills_batch_lines_like_the_writer(database, make_event) -> None:
    """The local bus's consumer (the raw ``sqlite3`` drain on SQLite, ``LedgerWriter.write`` on PostgreSQL)."""
    await _book(database)
    bus = LocalOutboxBus(database, BusOptions())
    try:
        events = _batch_lines(make_event)
        for event in events:
            await bus.publish(event)
        consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, "usd"), batch_size=100, interval_s=0.01)
        assert await consumer.drain() == len(events)
        rows = {row.request_id: row for row in await ledger_rows(database)}
        _check_batch_costs(rows, events)
        assert [rows[e.request_id].batch_id for e in events][:2] == ["batch_1", "batch_1"]
    finally:
        await bus.close()


async def test_the_seed_gives_each_catalog_model_half_its_price_for_batches(database) -> None:
    from models.catalog import load_catalog

    catalog = load_catalog()
    book = PriceBook(database.sessions, "usd")
    first, second = catalog[0], catalog[1]
    await book.set_price(first.id, Decimal("9"), Decimal("9"), T0, tier="batch")  # an admin's batch price
    await book.set_price(second.id, Decimal("8"), Decimal("8"), T0)  # an admin's online price only
    assert await book.seed(catalog) == 2 * len(catalog) - 2
    assert await book.seed(catalog) == 0
    # The seed put no epoch batch price under the admin's: before it, batch lines pay the online default.
    assert [p.effective_from for p in await book.list(first.id, tier="batch")] == [T0]
    assert (await book.quote(first.id, T0 - DAY, tier="batch")).tier == "online"
    for spec in catalog[1:]:
        batch = await book.quote(spec.id, T0 - DAY, tier="batch")
        assert (batch.tier, batch.effective_from.year) == ("batch", 1970)
        assert (batch.input_per_million, batch.output_per_million) == (
            spec.input_price_per_million / 2, spec.output_price_per_million / 2)
    bf16 = await book.quote("smollm2-135m-instruct-bf16", tier="batch")
    assert (bf16.input_per_million, bf16.output_per_million) == (Decimal("0.015"), Decimal("0.03"))


async def test_budget_quotes_of_batch_lines_use_the_batch_tier(database) -> None:
    from models.catalog import load_catalog

    spec = next(s for s in load_catalog() if s.id == "smollm2-135m-instruct-bf16")
    book = PriceBook(database.sessions, "usd")
    quotes = BookQuotes(book)
    online, batch = await quotes.quote(spec, T0), await quotes.quote(spec, T0, tier="batch")
    assert (online.input_per_million, batch.input_per_million) == (Decimal("0.03"), Decimal("0.015"))  # catalog
    await book.set_price(spec.id, Decimal("0.01"), Decimal("0.02"), T0 - DAY, tier="batch")
    fresh = BookQuotes(book)
    assert (await fresh.quote(spec, T0, tier="batch")).input_per_million == Decimal("0.01")
    assert (await fresh.quote(spec, T0)).input_per_million == Decimal("0.03")  # no online entry: catalog
    await quotes.close()
    await fresh.close()


async def test_batch_price_api(client) -> None:
    body = {"model": "m", "input_per_million": "0.25", "output_per_million": "0.5", "effective_from": "2026-12-01"}
    online = await client.post("/v1/prices", json=body)
    assert (online.status_code, online.json()["tier"]) == (201, "online"), online.text
    batch = await client.post("/v1/prices", json={**body, "tier": "batch", "input_per_million": "0.125"})
    assert batch.status_code == 201, batch.text
    assert {k: batch.json()[k] for k in ("object", "model", "tier", "input_per_million")} == {
        "object": "price", "model": "m", "tier": "batch", "input_per_million": "0.125"}
    assert (await client.post("/v1/prices", json={**body, "tier": "batch"})).status_code == 409
    for wrong in ("bulk", "", None, 1):
        answer = await client.post("/v1/prices", json={**body, "tier": wrong})
        assert (answer.status_code, answer.json()["error"]["param"]) == (400, "tier"), wrong
    listed = (await client.get("/v1/prices", headers={"x-tenant": "t1"})).json()["data"]
    assert [(p["tier"], p["input_per_million"]) for p in listed] == [("batch", "0.125"), ("online", "0.25")]
    only = (await client.get("/v1/prices", params={"tier": "batch"})).json()["data"]
    assert [(p["model"], p["tier"]) for p in only] == [("m", "batch")]
    assert (await client.get("/v1/prices", params={"tier": "bulk"})).status_code == 400
