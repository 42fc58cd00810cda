"""``GET /v1/audit``: the audit log, newest first (a tenant's owners see their tenant's, the admin every one).

The log has no route that changes or removes an entry.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.params import QueryParameter

from audit.service import AuditLog
from meterway.errors import NotFound
from meterway.roles import AUDIT
from service.auth import Principal
from service.guard import needs
from service.http.fields import NAME_PATTERN


@get("/v1/audit", summary="List the audit log", tags=["Audit"], opt=needs(AUDIT))
async def list_audit(principal: Principal, audit_log: AuditLog,
                     after: Annotated[str | None, QueryParameter(pattern=r"^audit_[0-9]{1,18}$")] = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
                     action: Annotated[str | None, QueryParameter(max_length=40)] = None,
                     tenant: Annotated[str | None, QueryParameter(pattern=NAME_PATTERN)] = None) -> dict[str, Any]:
    """Management actions, newest first: who (``actor``), what (``action`` on ``target``), when (``at``), from
    where (``source``), and before → after for changes of traffic and limits; ``after`` is the last id of the
    previous page. The admin sees every tenant's (or ``tenant``'s) and the platform's own."""
    if not principal.is_admin:
        if tenant not in (None, principal.tenant):
            raise NotFound(f"tenant '{tenant}' not found", param="tenant")
        tenant = principal.billing_tenant
    data, more = await audit_log.page(tenant, after, limit, action)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


audit_handlers = [list_audit]
