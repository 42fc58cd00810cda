"""The ledger: idempotent, priced with the entry in force at the request's start, exact decimals."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from billing.bus import BusOptions
from billing.consumer import LedgerConsumer
from billing.ledger import LedgerWriter
from billing.local_bus import LocalOutboxBus
from billing.prices import PriceBook
from meterway.errors import NotFound
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows


async def test_redelivered_event_adds_nothing(database, make_event) -> None:
    writer = LedgerWriter(database.sessions, "usd")
    events = [make_event() for _ in range(20)]
    assert await writer.write(events) == 20
    assert await writer.write(events[:5]) == 0  # a redelivery
    assert await writer.write([*events[10:], make_event(request_id="new")]) == 1
    rows = await ledger_rows(database)
    assert len(rows) == 21
    assert len({row.request_id for row in rows}) == 21


async def test_event_published_twice_on_the_local_bus_is_billed_once(database, make_event) -> None:
    bus = LocalOutboxBus(database, BusOptions())
    consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, "usd"), batch_size=7, interval_s=0.01)
    events = [make_event() for _ in range(30)]
    for event in events + events[:10]:
        await bus.publish(event)
    assert await consumer.drain() == 40
    assert await bus.pending() == 0
    rows = await ledger_rows(database)
    assert sorted(row.request_id for row in rows) == sorted(e.request_id for e in events)
    assert sum(row.prompt_tokens for row in rows) == sum(e.prompt_tokens for e in events)


async def test_an_old_event_keeps_the_price_in_force_when_it_started(database, make_event) -> None:
    book = PriceBook(database.sessions, "usd")
    await book.set_price("m", Decimal("0.05"), Decimal("0.10"), T0 - timedelta(days=30))
    await book.set_price("m", Decimal("0.50"), Decimal("1.00"), T0)
    before = make_event(model="m", started_at=T0 - timedelta(seconds=1), prompt_tokens=1000,
                        completion_tokens=2000)
    after = make_event(model="m", started_at=T0, prompt_tokens=1000, completion_tokens=2000)
    # The later-priced event is written first: order of arrival must not matter.
    await LedgerWriter(database.sessions, "usd").write([after, before])
    by_id = {row.request_id: row for row in await ledger_rows(database)}
    assert by_id[before.request_id].input_per_million == Decimal("0.05")
    assert by_id[before.request_id].cost == Decimal("0.00025")
    assert by_id[after.request_id].output_per_million == Decimal("1.00")
    assert by_id[after.request_id].cost == Decimal("0.0025")
    assert (await book.quote("m", T0 - timedelta(days=1))).input_per_million == Decimal("0.05")
    assert (await book.quote("m", T0 + timedelta(days=1))).input_per_million == Decimal("0.50")


async def test_costs_are_exact_decimals_down_to_sub_nano_amounts(database, make_event) -> None:
    book = PriceBook(database.sessions, "usd")
    await book.set_price("tiny", Decimal("0.000123"), Decimal("0.0000007"), T0 - timedelta(days=1))
    events = [make_event(model="tiny", prompt_tokens=p, completion_tokens=c)
              for p, c in [(1, 1), (3, 0), (0, 7), (999_999, 1_000_001)]]
    await LedgerWriter(database.sessions, "usd").write(events)
    rows = {row.request_id: row for row in await ledger_rows(database)}
    expected = [Decimal("0.0000000001237"), Decimal("0.000000000369"), Decimal("0.0000000000049"),
                Decimal("0.0001236998777")]
    for event, cost in zip(events, expected, strict=True):
        assert rows[event.request_id].cost == cost
        assert isinstance(rows[event.request_id].cost, Decimal)
    assert sum(row.cost for row in rows.values()) == sum(expected)


async def test_fine_tune_without_its_own_price_uses_its_base_and_unpriced_usage_is_kept(database,
                                                                                        make_event) -> None:
    await PriceBook(database.sessions, "usd").set_price("base", Decimal("1"), Decimal("2"), T0 - timedelta(1))
    tuned = make_event(model="ft-acme-1", base_model="base", prompt_tokens=1_000_000, completion_tokens=0)
    unpriced = make_event(model="nobody-priced-this")
    await LedgerWriter(database.sessions, "usd").write([tuned, unpriced])
    rows = {row.request_id: row for row in await ledger_rows(database)}
    assert rows[tuned.request_id].cost == Decimal("1")
    assert rows[unpriced.request_id].cost == Decimal("0")  # recorded (the request id is taken), at zero


async def test_catalog_prices_seed_only_models_without_a_price(database) -> None:
    from models.catalog import load_catalog

    book = PriceBook(database.sessions, "usd")
    await book.set_price("smollm2-135m-instruct", Decimal("9"), Decimal("9"), T0)
    catalog = load_catalog()
    assert await book.seed(catalog) == 2 * len(catalog) - 1  # online defaults, and a batch one for every model
    assert await book.seed(catalog) == 0
    with pytest.raises(NotFound):  # the seed did not put an epoch price under an admin's price
        await book.quote("smollm2-135m-instruct", T0 - timedelta(days=1))
    bf16 = await book.quote("smollm2-135m-instruct-bf16")
    assert (bf16.input_per_million, bf16.output_per_million) == (Decimal("0.03"), Decimal("0.06"))


async def test_concurrent_publishes_on_the_local_bus_are_all_committed(database, make_event) -> None:
    bus = LocalOutboxBus(database, BusOptions())
    events = [make_event() for _ in range(300)]
    await asyncio.gather(*(bus.publish(event) for event in events))  # shares transactions (group commit)
    assert await bus.pending() == 300
    consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, "usd"), batch_size=64, interval_s=0.01)
    assert await consumer.drain() == 300
    assert len(await ledger_rows(database)) == 300
