"""The ledger writer: prices usage events and appends them, idempotently, in one transaction per batch.

It only ever INSERTs into ``ledger_entries`` (``ON CONFLICT (request_id) DO NOTHING``), and adds the entries that
were new to ``usage_rollups`` in the same transaction; see README.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from sqlalchemy import select, text

from billing import rollup
from billing.ledger_insert import BULK_INSERTS
from billing.money import BATCH, InstancePrice, Price, as_utc, next_period
from billing.prices import candidates, load_price_table, models_to_price
from billing.tables import ClosedPeriodRow

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from billing.events import UsageEvent
    from billing.prices import PriceTable

log = structlog.get_logger("billing.ledger")
ZERO = Decimal(0)
_P = TypeVar("_P", Price, InstancePrice)

# Dialect-specific pieces, chosen by name (the bulk inserts live in billing.ledger_insert).
# PostgreSQL: ROW EXCLUSIVE conflicts with the EXCLUSIVE lock that close_period takes, so a writer either
# finishes before a close or reads the closed period after it. SQLite: a no-op write as the first statement
# takes the database's single write lock before the reads that follow (pysqlite starts no transaction on a
# SELECT, so without it the reads could predate a concurrent close).
_SQLITE_WRITE_LOCK = "UPDATE closed_periods SET period = period WHERE 1 = 0"
_WRITER_LOCKS: dict[str, str] = {"postgresql": "LOCK TABLE ledger_entries IN ROW EXCLUSIVE MODE",
                                 "sqlite": _SQLITE_WRITE_LOCK}
CLOSE_LOCKS: dict[str, str] = {"postgresql": "LOCK TABLE ledger_entries IN EXCLUSIVE MODE",
                               "sqlite": _SQLITE_WRITE_LOCK}

def dialect_name(session: AsyncSession) -> str:
    """'postgresql' or 'sqlite': which database a session talks to."""
    return session.get_bind().dialect.name


async def lock_ledger(session: AsyncSession, locks: dict[str, str]) -> None:
    """Take the dialect's ledger lock inside the current transaction (no-op where none is needed)."""
    statement = locks.get(dialect_name(session))
    if statement:
        await session.execute(text(statement))


class LedgerWriter:
    """Turns usage events into ledger entries."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], currency: str) -> None:
        self._sessions = sessions
        self._currency = currency

    async def write(self, events: Sequence[UsageEvent],
                    also: Callable[[AsyncSession], Awaitable[None]] | None = None) -> int:
        """Append entries for ``events`` in one transaction, running ``also`` in it; returns the new ones."""
        if not events:
            return 0
        async with self._sessions() as session, session.begin():
            await lock_ledger(session, _WRITER_LOCKS)
            if also is not None:
                await also(session)
            closed = set((await session.execute(select(ClosedPeriodRow.period))).scalars())
            prices = await load_price_table(session, *models_to_price(events))
            now = datetime.now(UTC)
            unique = {e.request_id: e for e in events}  # a batch may carry a redelivery of its own event
            rows = [self.entry(unique[rid], prices, closed, now) for rid in sorted(unique)]
            new = await BULK_INSERTS[dialect_name(session)](session, rows)
            await rollup.upsert(session, rollup.deltas(row for row in rows if row["request_id"] in new))
            return len(new)

    def entry(self, event: UsageEvent, prices: PriceTable, closed: set[str], now: datetime) -> dict[str, Any]:
        """The ledger row of ``event``: priced at its start, in the first open period (an adjustment if its
        own is in ``closed``). Every write path builds its rows here."""
        started, finished = as_utc(event.started_at), as_utc(event.finished_at)
        stamp = started.isoformat()  # 'YYYY-MM-DDTHH:...' in UTC: cheaper than three strftime calls
        period, kind = stamp[:7], "usage"
        while period in closed:
            period, kind = next_period(period), "adjustment"
        charge = self._capacity(event, prices, started) if event.instance_minutes > 0 else \
            self._tokens(event, prices, started)
        return {
            "request_id": event.request_id, "tenant": event.tenant, "key_id": event.key_id,
            "model": event.model, "base_model": event.base_model, "end_user": event.user,
            "endpoint": event.endpoint, "endpoint_name": event.endpoint_name, "deployment": event.deployment,
            "batch_id": event.batch_id, "subject": event.subject,
            "prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens, **charge,
            "started_at": started, "finished_at": finished,
            "duration_ms": None if event.instance_minutes > 0 else
            max(0, (finished - started) // timedelta(milliseconds=1)),
            "usage_day": stamp[:10], "usage_hour": stamp[:13],
            "status": event.status, "billable": event.billable, "period": period, "kind": kind,
            "created_at": now,
        }

    def _tokens(self, event: UsageEvent, prices: PriceTable, started: datetime) -> dict[str, Any]:
        """The price columns of a request: its model's token price (or its base model's); for a batch line the
        batch price, or the online price where neither model has a batch entry in force."""
        price = None
        if event.batch_id is not None:
            price = _lookup(lambda model: prices.at(model, started, BATCH), event)
        if price is None:
            price = _first(lambda model: prices.at(model, started), event)
        if price is None:
            price = Price(event.model, ZERO, ZERO, self._currency)
        return {"input_per_million": price.input_per_million, "output_per_million": price.output_per_million,
                "instance_type": None, "instance_minutes": 0, "per_instance_minute": ZERO,
                "cost": price.cost(event.prompt_tokens, event.completion_tokens), "currency": price.currency}

    def _capacity(self, event: UsageEvent, prices: PriceTable, started: datetime) -> dict[str, Any]:
        """The price columns of a capacity event: the price per minute of (model, instance type); its tokens,
        if any, are not charged."""
        price = _first(lambda model: prices.instance_at(model, event.instance_type, started), event)
        if price is None:
            price = InstancePrice(event.model, event.instance_type or "", ZERO, self._currency)
        return {"input_per_million": ZERO, "output_per_million": ZERO, "instance_type": event.instance_type,
                "instance_minutes": event.instance_minutes, "per_instance_minute": price.per_minute,
                "cost": price.cost(event.instance_minutes), "currency": price.currency}


def _lookup(find: Callable[[str], _P | None], event: UsageEvent) -> _P | None:
    """The price ``find`` has for the event's model, else for its base model (a fine-tune without its own)."""
    for model in candidates(event.model, event.base_model):
        price = find(model)
        if price is not None:
            return price
    return None


def _first(find: Callable[[str], _P | None], event: UsageEvent) -> _P | None:
    """``_lookup``, logging an event that has no price at all."""
    price = _lookup(find, event)
    if price is not None:
        return price
    # Never drop usage: the caller records it at zero so the request id is taken, and finance adjusts.
    log.error("usage_without_price", model=event.model, request_id=event.request_id,
              instance_type=event.instance_type)
    return None


