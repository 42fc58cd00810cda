"""``AuditLog``: record a management action, and page through the log newest first.

The log is append-only: this module offers no way to change or remove an entry, and the database refuses
both (triggers in migration 0015).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select

from audit.tables import AuditRow
from meterway.errors import InvalidRequest

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ID_PREFIX = "audit_"


@dataclass(frozen=True)
class AuditEntry:
    """What one management action records."""

    tenant: str | None
    actor: str
    action: str
    target: str
    source: str | None = None
    request_id: str | None = None
    before: dict[str, Any] | None = field(default=None)
    after: dict[str, Any] | None = field(default=None)


def _plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` as JSON types only (decimals and moments as strings), as the JSON column stores it."""
    return None if value is None else msgspec.json.decode(msgspec.json.encode(value))


def entry_body(row: AuditRow) -> dict[str, Any]:
    """The wire form of an entry."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    return {"id": f"{ID_PREFIX}{row.id}", "object": "audit_entry", "at": int(at.timestamp()), "tenant": row.tenant,
            "actor": row.actor, "action": row.action, "target": row.target, "source": row.source,
            "request_id": row.request_id, "before": row.before, "after": row.after}


def _cursor(after: str) -> int:
    number = after.removeprefix(ID_PREFIX)
    if not number.isdigit():
        raise InvalidRequest(f"'after' must be an audit entry id ({ID_PREFIX}...)", param="after")
    return int(number)


class AuditLog:
    """The audit log in the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, entry: AuditEntry) -> None:
        """Append one entry, now."""
        row = AuditRow(at=datetime.now(UTC), tenant=entry.tenant, actor=entry.actor[:255], action=entry.action,
                       target=entry.target[:255], source=entry.source, request_id=entry.request_id,
                       before=_plain(entry.before), after=_plain(entry.after))
        async with self._sessions.begin() as session:
            session.add(row)

    async def page(self, tenant: str | None, after: str | None, limit: int,
                   action: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Entries of ``tenant`` (None: every tenant's and the platform's), newest first, older than the entry
        ``after`` names, of one ``action`` if given; and whether more follow."""
        query = select(AuditRow)
        if tenant is not None:
            query = query.where(AuditRow.tenant == tenant)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if after is not None:
            query = query.where(AuditRow.id < _cursor(after))
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(AuditRow.id.desc()).limit(limit + 1))).all()
        return [entry_body(row) for row in rows[:limit]], len(rows) > limit
