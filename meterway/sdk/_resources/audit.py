"""``client.audit``: the audit log of management actions (``/v1/audit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterway.sdk._resources._base import Resource
from meterway.sdk._types import AuditEntry

if TYPE_CHECKING:
    from meterway.sdk._pages import Pages


class Audit(Resource):
    """Who did what, newest first."""

    def list(self, *, action: str | None = None, tenant: str | None = None, limit: int | None = None,
             after: str | None = None) -> Pages[AuditEntry]:
        """Every entry (``limit`` per page), optionally of one ``action`` or one ``tenant`` (admin)."""
        return self._pages(AuditEntry, "/v1/audit", action=action, tenant=tenant, limit=limit, after=after)
