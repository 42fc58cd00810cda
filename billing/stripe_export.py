"""The Stripe export: ledger usage per tenant / model / hour / token type, as meter events, exactly once.

Token types "input" and "output" (tokens) go out under the token meter's event name, "instance_minutes"
(instance-minutes of dedicated deployments) under the instance meter's.

Each run: (1) re-send every record left ``pending`` by a crash, with its fixed identifier and value;
(2) in one transaction, record as ``pending`` the difference between the ledger and what was exported, per
key, under the next sequence number; (3) send those and mark them ``sent``. A duplicate identifier reported by
Stripe means an earlier attempt arrived, so the record is marked ``sent`` too. See README.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import case, column, func, select, table, text, update

from billing.ledger import dialect_name
from billing.stripe_sink import DuplicateMeterEvent, MeterEvent
from billing.tables import LedgerEntryRow, StripeExportRow
from meterway.errors import NotFound

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from billing.stripe_sink import MeterEventSink

log = structlog.get_logger("billing.stripe")
# The gateway's table (migration 0001); billing reads and sets only the Stripe link.
TENANTS = table("tenants", column("id"), column("stripe_customer_id"))
# Stripe refuses timestamps older than 35 days; older usage is stamped a little inside the window.
_MAX_AGE = timedelta(days=34)
_PLAN_LOCKS = {"postgresql": "LOCK TABLE stripe_exports IN EXCLUSIVE MODE",
               "sqlite": "UPDATE stripe_exports SET seq = seq WHERE 1 = 0"}  # takes SQLite's write lock
INSTANCE_MINUTES = "instance_minutes"  # the token type of instance-minute records
DEFAULT_INSTANCE_EVENT = "meterway_instance_minutes"


def identifier_for(tenant: str, model: str, hour: str, token_type: str, seq: int) -> str:
    """Deterministic meter event identifier for one slice of usage (≤ 100 characters, as Stripe allows)."""
    digest = hashlib.sha256(f"{tenant}\x1f{model}\x1f{hour}\x1f{token_type}\x1f{seq}".encode()).hexdigest()
    return f"mw_{digest[:40]}"


@dataclass(frozen=True)
class ExportResult:
    """What one export run did."""

    sent: int  # meter events Stripe accepted now
    already_there: int  # duplicates: an earlier, unrecorded attempt had arrived
    tokens: int  # tokens covered by this run's records
    instance_minutes: int = 0  # instance-minutes covered by this run's records


@dataclass(frozen=True)
class ReconcileLine:
    """Ledger vs exported billable tokens and instance-minutes for one tenant."""

    tenant: str
    stripe_customer_id: str | None
    ledger_tokens: int
    exported_tokens: int
    pending_tokens: int
    ledger_instance_minutes: int = 0
    exported_instance_minutes: int = 0
    pending_instance_minutes: int = 0

    @property
    def balanced(self) -> bool:
        return self.stripe_customer_id is None or (
            self.ledger_tokens == self.exported_tokens
            and self.ledger_instance_minutes == self.exported_instance_minutes)

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "stripe_customer_id": self.stripe_customer_id,
                "ledger_tokens": self.ledger_tokens, "exported_tokens": self.exported_tokens,
                "pending_tokens": self.pending_tokens, "ledger_instance_minutes": self.ledger_instance_minutes,
                "exported_instance_minutes": self.exported_instance_minutes,
                "pending_instance_minutes": self.pending_instance_minutes, "balanced": self.balanced}


class StripeExporter:
    """Projects the ledger onto Stripe meter events; never writes the ledger."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sink: MeterEventSink,
                 event_name: str, instance_event_name: str = DEFAULT_INSTANCE_EVENT) -> None:
        self._sessions = sessions
        self._sink = sink
        self._event_name = event_name
        self._instance_event_name = instance_event_name

    async def export(self) -> ExportResult:
        """One full export run (safe to repeat, safe to interrupt)."""
        sent = dup = 0
        values = {"tokens": 0, INSTANCE_MINUTES: 0}
        for _round in ("resume", "new"):
            if _round == "new":
                await self._plan()
            for record in await self._pending():
                values[INSTANCE_MINUTES if record.token_type == INSTANCE_MINUTES else "tokens"] += record.value
                try:
                    await self._sink.send(self._event(record))
                    sent += 1
                except DuplicateMeterEvent:
                    dup += 1
                await self._mark_sent(record.identifier)
        if sent or dup:
            log.info("stripe_export", sent=sent, already_there=dup, **values)
        return ExportResult(sent, dup, values["tokens"], values[INSTANCE_MINUTES])

    def _event(self, record: StripeExportRow) -> MeterEvent:
        name = self._instance_event_name if record.token_type == INSTANCE_MINUTES else self._event_name
        return MeterEvent(name, record.identifier, record.stripe_customer_id, record.value,
                          record.timestamp, record.model, record.token_type)

    async def _pending(self) -> list[StripeExportRow]:
        async with self._sessions() as session:
            query = select(StripeExportRow).where(StripeExportRow.status == "pending")
            return list((await session.execute(query.order_by(StripeExportRow.created_at))).scalars())

    async def _mark_sent(self, identifier: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(update(StripeExportRow).where(StripeExportRow.identifier == identifier)
                                  .values(status="sent", sent_at=datetime.now(UTC)))

    async def _plan(self) -> int:
        """Record, as pending, every positive difference between ledger and exports; returns records."""
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            statement = _PLAN_LOCKS.get(dialect_name(session))
            if statement:
                await session.execute(text(statement))
            exported = {(r.tenant, r.model, r.usage_hour, r.token_type): (int(r.value), int(r.seq))
                        for r in (await session.execute(_exported_by_key())).all()}
            records = 0
            for row in (await session.execute(_ledger_by_key())).all():
                for token_type, total in (("input", int(row.prompt)), ("output", int(row.completion)),
                                          (INSTANCE_MINUTES, int(row.minutes))):
                    done, seq = exported.get((row.tenant, row.model, row.usage_hour, token_type), (0, -1))
                    if total > done:
                        session.add(_record(row, token_type, total - done, seq + 1, now))
                        records += 1
        return records

    async def reconcile(self) -> list[ReconcileLine]:
        """Ledger vs exported billable tokens and instance-minutes per tenant (linked tenants must balance
        after an export)."""
        async with self._sessions() as session:
            ledger = (await session.execute(_ledger_by_tenant())).all()
            exported = {(r.tenant, r.status, r.meter): int(r.value)
                        for r in (await session.execute(_exported_by_tenant())).all()}
        return [ReconcileLine(r.tenant, r.stripe_customer_id, int(r.tokens or 0),
                              exported.get((r.tenant, "sent", "tokens"), 0),
                              exported.get((r.tenant, "pending", "tokens"), 0), int(r.minutes or 0),
                              exported.get((r.tenant, "sent", INSTANCE_MINUTES), 0),
                              exported.get((r.tenant, "pending", INSTANCE_MINUTES), 0))
                for r in sorted(ledger, key=lambda r: r.tenant)]


def _ledger_by_tenant() -> Any:
    entry = LedgerEntryRow
    return (select(entry.tenant, TENANTS.c.stripe_customer_id,
                   func.sum(entry.prompt_tokens + entry.completion_tokens).label("tokens"),
                   func.sum(entry.instance_minutes).label("minutes"))
            .outerjoin(TENANTS, TENANTS.c.id == entry.tenant).where(entry.billable.is_(True))
            .group_by(entry.tenant, TENANTS.c.stripe_customer_id))


def _exported_by_tenant() -> Any:
    export = StripeExportRow
    meter = case((export.token_type == INSTANCE_MINUTES, INSTANCE_MINUTES), else_="tokens").label("meter")
    return (select(export.tenant, export.status, meter, func.sum(export.value).label("value"))
            .group_by(export.tenant, export.status, meter))


def _ledger_by_key() -> Any:
    entry = LedgerEntryRow
    return (select(entry.tenant, entry.model, entry.usage_hour, TENANTS.c.stripe_customer_id,
                   func.sum(entry.prompt_tokens).label("prompt"),
                   func.sum(entry.completion_tokens).label("completion"),
                   func.sum(entry.instance_minutes).label("minutes"))
            .join(TENANTS, TENANTS.c.id == entry.tenant)
            .where(entry.billable.is_(True), TENANTS.c.stripe_customer_id.is_not(None))
            .group_by(entry.tenant, entry.model, entry.usage_hour, TENANTS.c.stripe_customer_id))


def _exported_by_key() -> Any:
    export = StripeExportRow
    return (select(export.tenant, export.model, export.usage_hour, export.token_type,
                   func.sum(export.value).label("value"), func.max(export.seq).label("seq"))
            .group_by(export.tenant, export.model, export.usage_hour, export.token_type))


def _record(row: Any, token_type: str, value: int, seq: int, now: datetime) -> StripeExportRow:
    hour = datetime.strptime(row.usage_hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    stamp = max(hour, now - _MAX_AGE)
    return StripeExportRow(
        identifier=identifier_for(row.tenant, row.model, row.usage_hour, token_type, seq), tenant=row.tenant,
        model=row.model, usage_hour=row.usage_hour, token_type=token_type, seq=seq, value=value,
        stripe_customer_id=row.stripe_customer_id, timestamp=int(stamp.timestamp()), status="pending",
        created_at=now, sent_at=None)


async def link_stripe_customer(sessions: async_sessionmaker[AsyncSession], tenant: str,
                               customer_id: str) -> None:
    """Link ``tenant`` to a Stripe customer (``tenants.stripe_customer_id``); NotFound if no such tenant."""
    async with sessions() as session, session.begin():
        result = await session.execute(update(TENANTS).where(TENANTS.c.id == tenant)
                                       .values(stripe_customer_id=customer_id))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"tenant '{tenant}' does not exist", param="tenant")
