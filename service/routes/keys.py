"""API key management: ``/v1/keys`` (the admin creates and updates keys, with their role and scope; a tenant's
owners list, revoke and rotate their own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import delete, get, patch, post
from litestar.params import Parameter
from msgspec import Meta

from meterway.roles import KEYS, PLATFORM
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.fields import Body, BudgetAmount, BudgetPeriod, LabelText, Limit, ModelId, Name
from service.keys import LIMIT_FIELDS, SCOPE_FIELDS, KeyService
from service.routes.endpoints import Label

if TYPE_CHECKING:
    from datetime import datetime

    from service.tables import ApiKeyRow

PositiveInt = Annotated[int, Meta(ge=1)]
Role = Literal["owner", "developer", "invoker", "finance", "reader"]  # meterway.roles.TENANT_ROLES (a test holds it)
Models = Annotated[list[ModelId], Meta(min_length=1, max_length=64)]  # the only models the key may call
Endpoints = Annotated[list[Label], Meta(min_length=1, max_length=64)]  # ... and endpoints ('serverless': /v1)
Expiry = Annotated[int, Meta(ge=0, le=99_999_999_999, description="unix seconds, in the future")]


class KeyLimits(Body, kw_only=True, omit_defaults=True):
    """A key's limits, each optional."""

    rpm: Limit | None = None
    tpm: Limit | None = None
    rpd: Limit | None = None
    max_concurrency: Limit | None = None
    budget_amount: BudgetAmount | None = None
    budget_period: BudgetPeriod | None = None


class KeyCreate(KeyLimits, kw_only=True):
    tenant: Name
    name: LabelText = "default"
    role: Role = "owner"
    models: Models | None = None  # omitted: any model
    endpoints: Endpoints | None = None  # omitted: any endpoint
    expires_at: Expiry | None = None  # omitted: never


class KeyUpdate(KeyLimits, kw_only=True, omit_defaults=True):
    name: LabelText | None = None
    role: Role | None = None
    models: Models | msgspec.UnsetType | None = msgspec.UNSET  # null: any model again
    endpoints: Endpoints | msgspec.UnsetType | None = msgspec.UNSET  # null: any endpoint again
    expires_at: Expiry | None = None


class ApiKey(msgspec.Struct, kw_only=True):
    id: str
    object: str = "api_key"
    tenant: str
    name: str
    prefix: str
    created_at: int
    revoked_at: int | None
    expires_at: int | None
    rpm: int | None
    tpm: int | None
    rpd: int | None
    max_concurrency: int | None
    budget_amount: str | None
    budget_period: str | None
    role: str
    models: list[str] | None
    endpoints: list[str] | None
    secret: str | None = None  # only in the response that created or rotated the key


class ApiKeyList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ApiKey]


class KeyDeleted(msgspec.Struct, kw_only=True):
    id: str
    object: str = "api_key.deleted"
    deleted: bool = True


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _view(row: ApiKeyRow, secret: str | None = None) -> ApiKey:
    return ApiKey(id=row.id, tenant=row.tenant, name=row.name, prefix=row.prefix,
                  created_at=_epoch(row.created_at) or 0, revoked_at=_epoch(row.revoked_at),
                  expires_at=_epoch(row.expires_at), rpm=row.rpm, tpm=row.tpm, rpd=row.rpd,
                  max_concurrency=row.max_concurrency,
                  budget_amount=None if row.budget_amount is None else str(row.budget_amount),
                  budget_period=row.budget_period, role=row.role, models=row.models, endpoints=row.endpoints,
                  secret=secret)


def _settings(row: ApiKeyRow) -> dict[str, Any]:
    """What the audit log keeps of a key before and after a change: its limits, role, scope and expiry."""
    view = msgspec.structs.asdict(_view(row))
    return {field: view[field] for field in (*LIMIT_FIELDS, *SCOPE_FIELDS, "name", "expires_at")}


@post("/v1/keys", summary="Create an API key (admin)", tags=["Keys"], status_code=201, opt=needs(PLATFORM))
async def create_key(data: KeyCreate, keys: KeyService, audit: AuditTrail) -> ApiKey:
    """Create a tenant key with its ``role`` (default ``owner``), optional ``models`` and ``endpoints`` scope
    and ``expires_at``; the response carries its secret, which is never shown again."""
    issued = await keys.create(data.tenant, data.name, msgspec.structs.asdict(data))
    await audit.record("key.create", issued.row.id, after=_settings(issued.row), tenant=data.tenant)
    return _view(issued.row, issued.secret)


@get("/v1/keys", summary="List API keys", tags=["Keys"], opt=needs(KEYS))
async def list_keys(principal: Principal, keys: KeyService,
                    tenant: Annotated[str | None, Parameter(query="tenant")] = None,
                    include_revoked: Annotated[bool, Parameter(query="include_revoked")] = False) -> ApiKeyList:
    """Keys without secrets: all (or one tenant's) for the admin, the caller's own tenant's otherwise;
    revoked keys only with ``include_revoked=true``."""
    return ApiKeyList(data=[_view(row) for row in await keys.list(principal, tenant,
                                                                  include_revoked=include_revoked)])


@get("/v1/keys/{key_id:str}", summary="Retrieve an API key", tags=["Keys"], opt=needs(KEYS))
async def get_key(key_id: str, principal: Principal, keys: KeyService) -> ApiKey:
    return _view(await keys.get(principal, key_id))


@patch("/v1/keys/{key_id:str}", summary="Update a key's name, limits, role or scope (admin)", tags=["Keys"],
       opt=needs(PLATFORM))
async def update_key(key_id: str, data: KeyUpdate, principal: Principal, keys: KeyService,
                     audit: AuditTrail) -> ApiKey:
    """Set limits (``rpm``, ``tpm``, ``rpd``, ``max_concurrency``, ``budget_amount``, ``budget_period``), the
    ``role``, the ``models`` and ``endpoints`` scope (``null``: any again) or a later ``expires_at``."""
    changes = {k: v for k, v in msgspec.structs.asdict(data).items()
               if v is not msgspec.UNSET and (v is not None or k in ("models", "endpoints"))}
    before = _settings(await keys.get(principal, key_id))
    row = await keys.update(principal, key_id, changes)
    await audit.record("key.update", key_id, before=before, after=_settings(row), tenant=row.tenant)
    return _view(row)


@delete("/v1/keys/{key_id:str}", summary="Revoke an API key", tags=["Keys"], status_code=200, opt=needs(KEYS))
async def revoke_key(key_id: str, principal: Principal, keys: KeyService, audit: AuditTrail) -> KeyDeleted:
    """Revoke at once; the admin may revoke any key, a tenant's owner its own tenant's keys."""
    row = await keys.revoke(principal, key_id)
    await audit.record("key.revoke", key_id, tenant=row.tenant)
    return KeyDeleted(id=key_id)


@post("/v1/keys/{key_id:str}/rotate", summary="Rotate an API key", tags=["Keys"], status_code=201,
      opt=needs(KEYS))
async def rotate_key(key_id: str, principal: Principal, keys: KeyService, audit: AuditTrail) -> ApiKey:
    """A new secret with the same limits, role and scope; the old secret keeps working for the rotation grace
    period."""
    issued = await keys.rotate(principal, key_id)
    await audit.record("key.rotate", key_id, after={"id": issued.row.id}, tenant=issued.row.tenant)
    return _view(issued.row, issued.secret)


key_handlers = [create_key, list_keys, get_key, update_key, revoke_key, rotate_key]
