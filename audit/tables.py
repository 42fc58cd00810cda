"""The audit log's one table (migration 0015): rows are inserted, never updated or deleted.

No code path updates or deletes a row, and on both databases a trigger refuses it (0015).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base, BigId


class AuditRow(Base):
    """One management action: who (``actor``: a key id, a token's subject or 'admin') did what to which object
    of which tenant, from where, and the object's relevant settings before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)  # the log's order
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)  # None: a platform action (prices)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(40), index=True)  # e.g. endpoint.put, key.revoke
    target: Mapped[str] = mapped_column(String(255))  # the object's id or name
    source: Mapped[str | None] = mapped_column(String(64))  # the client's address
    request_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
