"""A tenant's OpenID Connect issuer: ``/v1/tenants/{tenant}/identity`` (the admin or the tenant itself).

Once set, bearer tokens of that issuer with that audience act for the tenant (``service/tokens.py``). Each
handler decodes, calls one ``IdentityService`` method and encodes.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import delete, get, put
from litestar.di import Provide
from msgspec import Meta

from identity.service import IdentityService, IdentitySpec
from meterway.errors import NotFound
from meterway.roles import KEYS
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.fields import Body
from service.routes.tenants import TenantId

TAGS = ["Identity"]
Claim = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:/#-]{1,64}$",
                            description="a claim name, or a dotted path into nested claims")]


class IdentityPut(Body):
    """``PUT /v1/tenants/{tenant}/identity``: the issuer whose tokens act for the tenant."""

    issuer: Annotated[str, Meta(pattern=r"^https?://[!-~]{1,504}$", description="the issuer URL, exactly as in `iss`")]
    audience: Annotated[str, Meta(pattern=r"^[^\x00-\x1f\x7f]{1,256}$", description="the `aud` its tokens carry")]
    subject_claim: Claim = "sub"  # the claim that names the caller (usage records it)
    roles_claim: Claim = "roles"  # the claim that lists the caller's meterway roles


def _manages(principal: Principal, tenant: str) -> None:
    """The admin manages every tenant's issuer, a tenant its own; another's is a 404, as if it did not exist."""
    if not (principal.is_admin or principal.tenant == tenant):
        raise NotFound(f"No tenant '{tenant}'.", param="tenant")


@put("/v1/tenants/{tenant_id:str}/identity", summary="Set a tenant's identity provider", tags=TAGS,
     opt=needs(KEYS))
async def put_identity(tenant_id: TenantId, data: IdentityPut, principal: Principal,
                       identities: IdentityService, audit: AuditTrail) -> dict[str, Any]:
    """Idempotent. The issuer is an https URL (http on a loopback host in local mode only); one that another
    tenant has, or the platform's own, is a 409."""
    _manages(principal, tenant_id)
    spec = IdentitySpec(data.issuer, data.audience, data.subject_claim, data.roles_claim)
    body = await identities.put(tenant_id, spec)
    await audit.record("identity.put", tenant_id, after=msgspec.structs.asdict(data), tenant=tenant_id)
    return body


@get("/v1/tenants/{tenant_id:str}/identity", summary="Get a tenant's identity provider", tags=TAGS,
     opt=needs(KEYS))
async def get_identity(tenant_id: TenantId, principal: Principal, identities: IdentityService) -> dict[str, Any]:
    _manages(principal, tenant_id)
    return await identities.get(tenant_id)


@delete("/v1/tenants/{tenant_id:str}/identity", summary="Remove a tenant's identity provider", tags=TAGS,
        status_code=200, opt=needs(KEYS))
async def delete_identity(tenant_id: TenantId, principal: Principal, identities: IdentityService,
                          audit: AuditTrail) -> dict[str, Any]:
    """Its tokens are refused from then on."""
    _manages(principal, tenant_id)
    await identities.delete(tenant_id)
    await audit.record("identity.delete", tenant_id, tenant=tenant_id)
    return {"object": "tenant.identity", "tenant": tenant_id, "deleted": True}


identity_handlers = [put_identity, get_identity, delete_identity]


def identity_dependencies(service: IdentityService) -> dict[str, Provide]:
    return {"identities": Provide(lambda: service, use_cache=True, sync_to_thread=False)}
