"""A token caller's subject travels on its usage event (the bus's encoding, old events without it too), is
stored on its ledger entry by every write path, and reports group by it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.bus import decode_event, encode_event
from billing.events import UsageEvent
from billing.ledger import LedgerWriter
from billing.prices import PriceBook
from billing.reports import UsageQuery, UsageReports
from meterway.db import Database

T0 = datetime(2026, 11, 3, 12, tzinfo=UTC)


def _event(**fields: object) -> UsageEvent:
    values: dict[str, object] = {"request_id": "req-1", "tenant": "acme", "key_id": "token:acme", "model": "m",
                                 "endpoint": "chat.completions", "prompt_tokens": 3, "completion_tokens": 2,
                                 "started_at": T0, "finished_at": T0, **fields}
    return UsageEvent(**values)  # type: ignore[arg-type]


def test_the_subject_survives_the_bus_and_old_events_decode_without_it() -> None:
    event = _event(subject="alice@example.com")
    assert decode_event(encode_event(event)) == event
    old = encode_event(_event()).replace(b',"subject":null', b"")
    assert b"subject" not in old and decode_event(old).subject is None


async def test_the_ledger_stores_the_subject_and_reports_group_by_it(database_url: str) -> None:
    database = Database.connect(database_url)
    try:
        await PriceBook(database.sessions, "usd").set_price("m", Decimal("1"), Decimal("2"), T0.replace(year=2025))
        events = [_event(request_id=f"r{i}", subject=subject)
                  for i, subject in enumerate(["alice", "alice", "ci-7", None])]
        await LedgerWriter(database.sessions, "usd").write(events)
        report = await UsageReports(database.sessions).report(UsageQuery(group_by=("subject",)))
    finally:
        await database.close()
    assert {line.group["subject"]: line.requests for line in report.lines} == {"alice": 2, "ci-7": 1, "": 1}
