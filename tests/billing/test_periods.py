"""Period close: statements freeze a month; late events become adjustments in the next open period."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from billing.ledger import LedgerWriter
from billing.money import to_minor_units
from billing.periods import PeriodCloser, statements_csv, statements_json
from billing.prices import PriceBook
from meterway.errors import Conflict
from tests.billing.conftest import T0
from tests.billing.helpers import ledger_rows


async def _priced(database) -> LedgerWriter:
    await PriceBook(database.sessions, "usd").set_price("m", Decimal("2500"), Decimal("7500"),
                                                        T0 - timedelta(days=60))
    return LedgerWriter(database.sessions, "usd")


async def test_close_freezes_totals_and_a_late_event_becomes_an_adjustment(database, make_event) -> None:
    writer = await _priced(database)
    november = [make_event(model="m", tenant=t, prompt_tokens=1, completion_tokens=1)
                for t in ("a", "a", "b")]
    october = make_event(model="m", tenant="a", started_at=T0 - timedelta(days=30))
    await writer.write([*november, october])
    closer = PeriodCloser(database.sessions)
    statements = await closer.close_period("2026-11")
    by_tenant = {s.tenant: s for s in statements}
    assert by_tenant["a"].cost == Decimal("0.02") and by_tenant["a"].amount_minor == 2
    assert by_tenant["b"].requests == 1 and by_tenant["b"].amount_minor == 1

    late = make_event(model="m", tenant="a", started_at=T0 + timedelta(days=1), prompt_tokens=4)
    await writer.write([late])
    row = next(r for r in await ledger_rows(database) if r.request_id == late.request_id)
    assert (row.period, row.kind) == ("2026-12", "adjustment")
    assert row.started_at.replace(tzinfo=T0.tzinfo) == T0 + timedelta(days=1)  # when it really happened

    assert await closer.statements("2026-11") == statements  # the closed period did not move
    with pytest.raises(Conflict):
        await closer.close_period("2026-11")
    december = await closer.close_period("2026-12")
    assert [(s.tenant, s.prompt_tokens) for s in december] == [("a", 4)]
    october_rows = [r for r in await ledger_rows(database) if r.period == "2026-10"]
    assert [r.request_id for r in october_rows] == [october.request_id]  # October was never closed


async def test_statements_render_as_json_and_csv(database, make_event) -> None:
    writer = await _priced(database)
    await writer.write([make_event(model="m", tenant="a", prompt_tokens=3, completion_tokens=5)])
    statements = await PeriodCloser(database.sessions).close_period("2026-11")
    document = json.loads(statements_json(statements))
    assert document["data"][0]["cost"] == "0.045"
    assert document["data"][0]["lines"][0]["model"] == "m"
    rows = list(csv.DictReader(io.StringIO(statements_csv(statements))))
    assert rows == [{"period": "2026-11", "tenant": "a", "requests": "1", "prompt_tokens": "3",
                     "completion_tokens": "5", "instance_minutes": "0", "cost": "0.045", "amount_minor": "5",
                     "currency": "usd"}]


def test_rounding_is_half_up_once_to_minor_units() -> None:
    assert to_minor_units(Decimal("0.045"), "usd") == 5
    assert to_minor_units(Decimal("0.0449999"), "usd") == 4
    assert to_minor_units(Decimal("0.005"), "usd") == 1
    assert to_minor_units(Decimal("12.5"), "jpy") == 13
    assert to_minor_units(Decimal("1.0005"), "kwd") == 1001


async def test_close_racing_the_writer_loses_nothing(database, make_event) -> None:
    writer = await _priced(database)
    events = [make_event(model="m", tenant="a", prompt_tokens=1, completion_tokens=0) for _ in range(400)]

    async def write_all() -> None:
        for start in range(0, len(events), 20):
            await writer.write(events[start:start + 20])
            await asyncio.sleep(0)

    closer = PeriodCloser(database.sessions)
    _, statements = await asyncio.gather(write_all(), _close_soon(closer))
    rows = await ledger_rows(database)
    in_statement = statements[0].prompt_tokens if statements else 0
    adjustments = [r for r in rows if r.kind == "adjustment"]
    assert all(r.period == "2026-12" for r in adjustments)
    assert in_statement == len([r for r in rows if r.period == "2026-11"])
    assert in_statement + len(adjustments) == len(events)  # every event: in the statement or adjusted


async def _close_soon(closer: PeriodCloser) -> list:
    await asyncio.sleep(0.05)
    return await closer.close_period("2026-11")
