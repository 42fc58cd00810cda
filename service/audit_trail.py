"""What a management route records in the audit log: ``audit.record(action, target, before=, after=)``.

The ``audit`` dependency is one ``AuditTrail`` per request: it knows who acts (the principal, so taking it
authenticates and authorizes the caller like ``principal`` does), the client's address and the request id,
so a handler names only the action, the object and, for changes of traffic and limits, the settings before
and after. Handlers record after their service call succeeded: a refused change is not an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request  # noqa: TC002  (as below)
from litestar.di import Provide

from audit.service import AuditEntry, AuditLog
from service.auth import Principal  # noqa: TC001  (litestar reads the dependency's annotations at run time)


def actor_of(principal: Principal) -> str:
    """Who acts, as the log names it: a token's subject, a key's id, or 'admin'."""
    return principal.subject or principal.key_id or ("admin" if principal.is_admin else "unknown")


@dataclass(frozen=True)
class AuditTrail:
    """The audit log, bound to one request's caller, address and id."""

    log: AuditLog
    principal: Principal
    source: str | None
    request_id: str | None

    async def record(self, action: str, target: str, *, before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None, tenant: str | None = None) -> None:
        """Append ``action`` on ``target``; ``tenant`` is the object's owner (default: the caller's tenant)."""
        await self.log.record(AuditEntry(tenant or self.principal.tenant, actor_of(self.principal), action, target,
                                         self.source, self.request_id, before, after))


def audit_dependencies(log: AuditLog) -> dict[str, Provide]:
    """``audit``: the request's ``AuditTrail``; ``audit_log``: the log itself (``GET /v1/audit``)."""

    async def provide_audit(request: Request[Any, Any, Any], principal: Principal) -> AuditTrail:
        client = request.client
        return AuditTrail(log, principal, client.host if client else None, request.state.get("request_id"))

    return {"audit": Provide(provide_audit),
            "audit_log": Provide(lambda: log, use_cache=True, sync_to_thread=False)}
