"""The usage rollup: the ledger summed per (tenant, hour, model, key, endpoint, deployment, billable, meter, unit
prices), kept by the ledger's writers in the transaction that adds the entries (ledger invariant 12).

A report whose groups and bounds the rollup can answer (``answers``) reads a few rows per hour instead of every
entry: the console's pages stay fast over a busy period. Sums are integers and the unit prices are carried, so
a report from the rollup is the same, to the last digit, as one from the entries.

Both write paths call ``deltas`` on the entries that were new in their transaction (a redelivered event adds
no entry, so it adds nothing here either): ``LedgerWriter`` through SQLAlchemy (``upsert``), the SQLite drain
on its raw connection (``SQLITE_UPSERT``). Rows are sent in grain order, so two PostgreSQL writers never wait
on each other's rows in opposite orders.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from billing.tables import LEDGER_METER, REQUEST_COUNT, LedgerEntryRow, UsageRollupRow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession

GRAIN = ("tenant", "usage_hour", "model", "key_id", "endpoint_name", "deployment", "billable", "meter",
         "input_per_million", "output_per_million", "per_instance_minute", "currency")
SUMS = ("requests", "prompt_tokens", "completion_tokens", "instance_minutes", "timed_requests", "duration_ms")
COLUMNS = (*GRAIN, "usage_day", *SUMS)
# Report groups the rollup keeps, by the rollup column that holds each.
GROUPS: dict[str, Any] = {
    "day": UsageRollupRow.usage_day, "hour": UsageRollupRow.usage_hour, "model": UsageRollupRow.model,
    "key": UsageRollupRow.key_id, "tenant": UsageRollupRow.tenant, "endpoint": UsageRollupRow.endpoint_name,
    "deployment": UsageRollupRow.deployment, "billable": UsageRollupRow.billable, "meter": UsageRollupRow.meter,
}

_ADD = ", ".join(f"{name} = usage_rollups.{name} + excluded.{name}" for name in SUMS)
SQLITE_UPSERT = (f"INSERT INTO usage_rollups ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                 f"ON CONFLICT ({', '.join(GRAIN)}) DO UPDATE SET {_ADD}")


def deltas(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``entries`` (ledger rows, as the writers build them) add to the rollup, one dict per grain."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in entries:
        minutes = int(entry["instance_minutes"])
        meter = "instance_minutes" if minutes > 0 else "tokens"
        key = tuple(meter if name == "meter" else entry[name] for name in GRAIN)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {**dict(zip(GRAIN, key, strict=True)), "usage_day": entry["usage_hour"][:10],
                               **dict.fromkeys(SUMS, 0)}
        row["requests"] += 0 if minutes > 0 else 1
        row["prompt_tokens"] += int(entry["prompt_tokens"])
        row["completion_tokens"] += int(entry["completion_tokens"])
        row["instance_minutes"] += minutes
        if entry["duration_ms"] is not None:
            row["timed_requests"] += 1
            row["duration_ms"] += int(entry["duration_ms"])
    return [rows[key] for key in sorted(rows, key=_order)]


def _order(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(format(part, "f") if isinstance(part, Decimal) else str(part) for part in key)


async def upsert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` (from ``deltas``) to the rollup in the session's transaction."""
    if not rows:
        return
    table: Table = UsageRollupRow.__table__  # type: ignore[assignment]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(GRAIN),
        set_={name: getattr(table.c, name) + getattr(statement.excluded, name) for name in SUMS})
    await session.execute(statement, rows)


def answers(group_by: tuple[str, ...], start: datetime | None, end: datetime | None) -> bool:
    """Whether the rollup answers a report with these groups and bounds: every group is one it keeps, and each
    bound falls on a whole UTC hour (the rollup's finest bucket)."""
    return all(name in GROUPS for name in group_by) and all(_on_the_hour(bound) for bound in (start, end))


def _on_the_hour(moment: datetime | None) -> bool:
    if moment is None:
        return True
    moment = moment.astimezone(UTC)
    return moment.minute == 0 and moment.second == 0 and moment.microsecond == 0


def hour_of(moment: datetime) -> str:
    """The rollup's ``usage_hour`` of ``moment`` ('YYYY-MM-DDTHH', UTC), as the ledger stamps it."""
    return moment.astimezone(UTC).isoformat()[:13]


async def drift(session: AsyncSession) -> list[tuple[Any, ...]]:
    """Grains where the rollup and ``GROUP BY`` over the ledger disagree (empty: they agree, as they must)."""
    entry = LedgerEntryRow
    ledger = select(entry.tenant, entry.usage_hour, entry.model, entry.key_id, entry.endpoint_name,
                    entry.deployment, entry.billable, LEDGER_METER.label("meter"), entry.input_per_million,
                    entry.output_per_million, entry.per_instance_minute, entry.currency, REQUEST_COUNT,
                    func.sum(entry.prompt_tokens), func.sum(entry.completion_tokens),
                    func.sum(entry.instance_minutes), func.count(entry.duration_ms),
                    func.coalesce(func.sum(entry.duration_ms), 0))
    ledger = ledger.group_by(*ledger.selected_columns[:len(GRAIN)])
    rollup = select(*(getattr(UsageRollupRow, name) for name in (*GRAIN, *SUMS)))
    want = {_normal(row) for row in (await session.execute(ledger)).all()}
    have = {_normal(row) for row in (await session.execute(rollup)).all()}
    return sorted(want ^ have, key=str)


def _normal(row: Any) -> tuple[Any, ...]:
    return tuple(part.normalize() if isinstance(part, Decimal) else
                 int(part) if isinstance(part, int) and not isinstance(part, bool) else part for part in row)
