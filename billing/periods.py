"""Period close: freeze each tenant's billable totals for a month into invoice-ready statements.

A statement has a line per model and token prices (requests, tokens) and one per model, instance type and
price per minute (instance-minutes); its cost is the exact sum of its lines, rounded once to minor units.

A closed period is never reopened or edited; events for it that arrive later become adjustments in the next
open period (the ledger writer does that). Closing serialises with the writer on the ledger lock.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from billing.ledger import CLOSE_LOCKS, lock_ledger
from billing.money import as_utc, check_period, cost_of, format_decimal, to_minor_units
from billing.tables import LEDGER_METER, REQUEST_COUNT, ClosedPeriodRow, LedgerEntryRow, StatementRow
from meterway.errors import Conflict

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_CSV_COLUMNS = ("period", "tenant", "requests", "prompt_tokens", "completion_tokens", "instance_minutes", "cost",
                "amount_minor", "currency")
_ENTRY = LedgerEntryRow
_GROUPS = (_ENTRY.tenant, _ENTRY.currency, _ENTRY.model, LEDGER_METER.label("meter"), _ENTRY.instance_type,
           _ENTRY.input_per_million, _ENTRY.output_per_million, _ENTRY.per_instance_minute)


@dataclass(frozen=True)
class Statement:
    """One tenant's closed period: exact cost and the amount rounded once to minor units."""

    period: str
    tenant: str
    currency: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    amount_minor: int
    lines: list[dict[str, Any]]  # per model: tokens or instance-minutes, unit prices, exact cost

    @property
    def instance_minutes(self) -> int:
        """The instance-minutes the statement charges (the sum of its instance lines)."""
        return sum(int(line.get("instance_minutes", 0)) for line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {"period": self.period, "tenant": self.tenant, "currency": self.currency,
                "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "instance_minutes": self.instance_minutes,
                "cost": format_decimal(self.cost), "amount_minor": self.amount_minor, "lines": self.lines}


def statements_json(statements: list[Statement]) -> str:
    """Statements as a JSON document."""
    return json.dumps({"object": "list", "data": [s.as_dict() for s in statements]}, indent=2)


def statements_csv(statements: list[Statement]) -> str:
    """One CSV row per tenant statement."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for statement in statements:
        row = statement.as_dict()
        writer.writerow([row[name] for name in _CSV_COLUMNS])
    return out.getvalue()


class PeriodCloser:
    """Closes periods and reads their statements."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def close_period(self, period: str) -> list[Statement]:
        """Freeze ``period`` ('YYYY-MM'); raises ``Conflict`` if it is already closed."""
        check_period(period)
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            await lock_ledger(session, CLOSE_LOCKS)
            if await session.get(ClosedPeriodRow, period) is not None:
                raise Conflict(f"period {period} is already closed", param="period", code="period_closed")
            session.add(ClosedPeriodRow(period=period, closed_at=now))
            statements = await _compute(session, period)
            for s in statements:
                session.add(StatementRow(
                    period=s.period, tenant=s.tenant, currency=s.currency, requests=s.requests,
                    prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens, cost=s.cost,
                    amount_minor=s.amount_minor, lines=json.dumps(s.lines), closed_at=now))
        return statements

    async def closed(self) -> dict[str, datetime]:
        """Every closed period and when it was closed, newest period first."""
        async with self._sessions() as session:
            rows = (await session.execute(select(ClosedPeriodRow).order_by(ClosedPeriodRow.period.desc()))).scalars()
            return {row.period: as_utc(row.closed_at) for row in rows}

    async def statements(self, period: str, tenant: str | None = None) -> list[Statement]:
        """The frozen statements of a closed period (one tenant's, or all)."""
        query = select(StatementRow).where(StatementRow.period == check_period(period))
        if tenant is not None:
            query = query.where(StatementRow.tenant == tenant)
        async with self._sessions() as session:
            rows = (await session.execute(query.order_by(StatementRow.tenant))).scalars().all()
        return [Statement(r.period, r.tenant, r.currency, r.requests, r.prompt_tokens, r.completion_tokens,
                          r.cost, r.amount_minor, json.loads(r.lines)) for r in rows]

async def _compute(session: AsyncSession, period: str) -> list[Statement]:
    rows = (await session.execute(
        select(*_GROUPS, REQUEST_COUNT.label("requests"), func.sum(_ENTRY.prompt_tokens).label("prompt"),
               func.sum(_ENTRY.completion_tokens).label("completion"),
               func.sum(_ENTRY.instance_minutes).label("minutes"))
        .where(_ENTRY.period == period, _ENTRY.billable.is_(True)).group_by(*_GROUPS)
        .order_by(_ENTRY.tenant, _ENTRY.model, LEDGER_METER.desc(), _ENTRY.instance_type))).all()
    by_tenant: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_tenant.setdefault((row.tenant, row.currency), []).append(row)
    return [_statement(period, tenant, currency, lines) for (tenant, currency), lines in by_tenant.items()]


def _token_line(row: Any) -> dict[str, Any]:
    return {"model": row.model, "requests": int(row.requests), "prompt_tokens": int(row.prompt),
            "completion_tokens": int(row.completion),
            "input_per_million": format_decimal(row.input_per_million),
            "output_per_million": format_decimal(row.output_per_million),
            "cost": format_decimal(cost_of(int(row.prompt), int(row.completion),
                                           row.input_per_million, row.output_per_million))}


def _instance_line(row: Any) -> dict[str, Any]:
    return {"model": row.model, "meter": "instance_minutes", "instance_type": row.instance_type or "",
            "instance_minutes": int(row.minutes), "per_instance_minute": format_decimal(row.per_instance_minute),
            "cost": format_decimal(int(row.minutes) * row.per_instance_minute)}


def _statement(period: str, tenant: str, currency: str, rows: list[Any]) -> Statement:
    lines = [_instance_line(row) if row.meter == "instance_minutes" else _token_line(row) for row in rows]
    cost = sum((Decimal(line["cost"]) for line in lines), Decimal(0))
    return Statement(period, tenant, currency, sum(line.get("requests", 0) for line in lines),
                     sum(line.get("prompt_tokens", 0) for line in lines),
                     sum(line.get("completion_tokens", 0) for line in lines), cost,
                     to_minor_units(cost, currency), lines)
