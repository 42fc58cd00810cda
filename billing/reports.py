"""Usage reports for finance: billable ledger entries grouped by day / hour / model / key / tenant / user / endpoint /
deployment / meter / instance type / batch / subject (a token caller's), JSON or CSV. Grouped by ``billable``
too, a report also shows the entries nobody is charged for (mirrored traffic), at cost 0.

Two meters: tokens (requests) and instance-minutes (capacity entries of dedicated deployments, which are not
requests). Totals are exact: SQL sums integer token and minute counts per set of unit prices, Python
multiplies by the exact prices, so a report equals the sum of its entries' costs to the last digit on SQLite
and PostgreSQL alike.

A report over groups the usage rollup keeps, bounded on whole hours (the console's, a month's or a day's), reads
the rollup (``billing.rollup``): the same sums per set of unit prices, from a few rows per hour instead of every
entry. Any other report reads the entries.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from billing import rollup
from billing.money import cost_of, format_decimal
from billing.tables import LEDGER_METER, REQUEST_COUNT, LedgerEntryRow, UsageRollupRow
from meterway.errors import InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

GROUPS: dict[str, Any] = {
    "day": LedgerEntryRow.usage_day, "hour": LedgerEntryRow.usage_hour, "model": LedgerEntryRow.model,
    "key": LedgerEntryRow.key_id,
    "tenant": LedgerEntryRow.tenant, "user": func.coalesce(LedgerEntryRow.end_user, ""),
    "endpoint": LedgerEntryRow.endpoint_name, "deployment": LedgerEntryRow.deployment,
    "billable": LedgerEntryRow.billable, "meter": LEDGER_METER,
    "instance_type": func.coalesce(LedgerEntryRow.instance_type, ""),
    "batch": func.coalesce(LedgerEntryRow.batch_id, ""),
    "subject": func.coalesce(LedgerEntryRow.subject, ""),  # a token caller's subject ("": keys)
}
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "instance_minutes", "mean_latency_ms")
# What a report sums per group and set of unit prices.
_PRICES = (LedgerEntryRow.input_per_million, LedgerEntryRow.output_per_million,
           LedgerEntryRow.per_instance_minute, LedgerEntryRow.currency, LedgerEntryRow.billable.label("charged"))
_SUMS = (REQUEST_COUNT.label("requests"), func.sum(LedgerEntryRow.prompt_tokens).label("prompt"),
         func.sum(LedgerEntryRow.completion_tokens).label("completion"),
         func.sum(LedgerEntryRow.instance_minutes).label("minutes"),
         func.count(LedgerEntryRow.duration_ms).label("timed"), func.sum(LedgerEntryRow.duration_ms).label("duration"))
# The same, from the rollup.
_ROLLUP_PRICES = (UsageRollupRow.input_per_million, UsageRollupRow.output_per_million,
                  UsageRollupRow.per_instance_minute, UsageRollupRow.currency,
                  UsageRollupRow.billable.label("charged"))
_ROLLUP_SUMS = (func.sum(UsageRollupRow.requests).label("requests"),
                func.sum(UsageRollupRow.prompt_tokens).label("prompt"),
                func.sum(UsageRollupRow.completion_tokens).label("completion"),
                func.sum(UsageRollupRow.instance_minutes).label("minutes"),
                func.sum(UsageRollupRow.timed_requests).label("timed"),
                func.sum(UsageRollupRow.duration_ms).label("duration"))


@dataclass(frozen=True)
class UsageQuery:
    """What to report: [start, end) over ``started_at``, grouped by ``group_by``, one tenant or all."""

    start: datetime | None = None
    end: datetime | None = None
    group_by: tuple[str, ...] = ("day", "model")
    tenant: str | None = None  # None: every tenant (admin only)


@dataclass
class UsageLine:
    """One group's totals: requests and tokens, instance-minutes, the exact cost of both, and the mean latency of
    its requests (start to last token, whole milliseconds; none where no request has one)."""

    group: dict[str, str]
    currency: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    instance_minutes: int = 0
    timed_requests: int = 0  # requests with a measured duration (all but those written before migration 0016)
    duration_ms: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def as_dict(self) -> dict[str, Any]:
        return {**self.group, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "instance_minutes": self.instance_minutes,
                "mean_latency_ms": self.duration_ms // self.timed_requests if self.timed_requests else None,
                "cost": format_decimal(self.cost),
                "currency": self.currency}


@dataclass
class UsageReport:
    """The lines of a report and their grand total."""

    query: UsageQuery
    lines: list[UsageLine]
    total: UsageLine

    def as_json(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/usage``."""
        bound = lambda moment: moment.isoformat() if moment else None  # noqa: E731
        return {"object": "usage_report", "start": bound(self.query.start), "end": bound(self.query.end),
                "group_by": list(self.query.group_by), "tenant": self.query.tenant,
                "data": [line.as_dict() for line in self.lines], "total": self.total.as_dict()}

    def as_csv(self) -> str:
        """One row per line, group columns first; costs as exact decimal strings."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.query.group_by, *_COUNTS, "cost", "currency"])
        for line in self.lines:
            row = line.as_dict()
            writer.writerow([row[name] for name in (*self.query.group_by, *_COUNTS, "cost", "currency")])
        return out.getvalue()


def parse_group_by(raw: str | list[str] | None) -> tuple[str, ...]:
    """'day,model' → ('day', 'model'); refuses unknown names."""
    parts = raw.split(",") if isinstance(raw, str) else list(raw or [])
    names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise InvalidRequest(f"group_by accepts {', '.join(GROUPS)}; not {', '.join(unknown)}",
                             param="group_by")
    return names


def parse_bound(raw: str | None, param: str) -> datetime | None:
    """A report bound: unix seconds, an ISO date or datetime (UTC unless it says otherwise).

    A date alone as ``end`` includes that whole day.
    """
    if raw is None or raw == "":
        return None
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw), UTC)
        if len(raw) == 10:
            day = datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
            return day + timedelta(days=1) if param == "end" else day
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"{param} must be unix seconds or an ISO date/datetime", param=param) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UsageReports:
    """Reads the ledger into reports. Never writes."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], currency: str = "usd") -> None:
        self._sessions = sessions
        self._currency = currency  # the price book's: what an empty report is in

    async def report(self, query: UsageQuery) -> UsageReport:
        """Billable usage matching ``query``, grouped, with exact costs."""
        async with self._sessions() as session:
            rows = (await session.execute(_statement(query))).all()
        lines: dict[tuple[str, ...], UsageLine] = {}
        total = UsageLine({}, "")
        for row in rows:
            key = (*(_text(getattr(row, name)) for name in query.group_by), row.currency)
            group = dict(zip(query.group_by, key, strict=False))
            line = lines.setdefault(key, UsageLine(group, row.currency))
            for target in (line, total):
                _add(target, row)
        total.currency = ",".join(sorted({line.currency for line in lines.values()})) or self._currency
        return UsageReport(query, [lines[k] for k in sorted(lines)], total)


@dataclass(frozen=True)
class _Source:
    """Where a report's sums come from: the ledger's entries or the rollup, with the columns of each."""

    groups: dict[str, Any]
    prices: tuple[Any, ...]
    sums: tuple[Any, ...]
    billable: Any
    tenant: Any
    since: Callable[[datetime], Any]  # the condition of a start bound
    until: Callable[[datetime], Any]  # and of an end bound


_ENTRIES = _Source(GROUPS, _PRICES, _SUMS, LedgerEntryRow.billable, LedgerEntryRow.tenant,
                   lambda at: LedgerEntryRow.started_at >= at.astimezone(UTC),
                   lambda at: LedgerEntryRow.started_at < at.astimezone(UTC))
# Whole-hour bounds compare as the rollup's hour stamps.
_ROLLUP = _Source(rollup.GROUPS, _ROLLUP_PRICES, _ROLLUP_SUMS, UsageRollupRow.billable, UsageRollupRow.tenant,
                  lambda at: UsageRollupRow.usage_hour >= rollup.hour_of(at),
                  lambda at: UsageRollupRow.usage_hour < rollup.hour_of(at))


def _statement(query: UsageQuery) -> Any:
    """The SQL of a report: sums per group and set of unit prices, within the query's bounds, from the rollup
    when it answers the query."""
    source = _ROLLUP if rollup.answers(query.group_by, query.start, query.end) else _ENTRIES
    columns = [source.groups[name].label(name) for name in query.group_by]
    statement = select(*columns, *source.prices, *source.sums).group_by(*columns, *source.prices)
    if "billable" not in query.group_by:
        statement = statement.where(source.billable.is_(True))
    if query.tenant is not None:
        statement = statement.where(source.tenant == query.tenant)
    if query.start is not None:
        statement = statement.where(source.since(query.start))
    if query.end is not None:
        statement = statement.where(source.until(query.end))
    return statement


def _add(line: UsageLine, row: Any) -> None:
    prompt, completion, minutes = int(row.prompt or 0), int(row.completion or 0), int(row.minutes or 0)
    line.requests += int(row.requests)
    line.prompt_tokens += prompt
    line.completion_tokens += completion
    line.instance_minutes += minutes
    line.timed_requests += int(row.timed or 0)
    line.duration_ms += int(row.duration or 0)
    if row.charged:  # mirrored traffic is shown, never charged
        line.cost += cost_of(prompt, completion, row.input_per_million, row.output_per_million)
        line.cost += minutes * row.per_instance_minute


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
