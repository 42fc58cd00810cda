"""API key management: ``/v1/keys`` (admin creates, updates and revokes; tenants list and rotate their own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import delete, get, patch, post
from litestar.params import Parameter
from msgspec import Meta

from meterway.errors import PermissionDenied
from service.auth import Principal
from service.http.fields import Body, BudgetAmount, BudgetPeriod, LabelText, Limit, Name
from service.keys import KeyService

if TYPE_CHECKING:
    from datetime import datetime

    from service.tables import ApiKeyRow

PositiveInt = Annotated[int, Meta(ge=1)]


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


class KeyUpdate(KeyLimits, kw_only=True, omit_defaults=True):
    name: LabelText | None = None


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
                  budget_period=row.budget_period, secret=secret)


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDenied("This route needs the platform admin key.")


@post("/v1/keys", summary="Create an API key (admin)", tags=["Keys"], status_code=201)
async def create_key(data: KeyCreate, principal: Principal, keys: KeyService) -> ApiKey:
    """Create a tenant key; the response carries its secret, which is never shown again."""
    _admin(principal)
    issued = await keys.create(data.tenant, data.name, msgspec.structs.asdict(data))
    return _view(issued.row, issued.secret)


@get("/v1/keys", summary="List API keys", tags=["Keys"])
async def list_keys(principal: Principal, keys: KeyService,
                    tenant: Annotated[str | None, Parameter(query="tenant")] = None,
                    include_revoked: Annotated[bool, Parameter(query="include_revoked")] = False) -> ApiKeyList:
    """Keys without secrets: all (or one tenant's) for the admin, the caller's own tenant's otherwise;
    revoked keys only with ``include_revoked=true``."""
    return ApiKeyList(data=[_view(row) for row in await keys.list(principal, tenant,
                                                                  include_revoked=include_revoked)])


@get("/v1/keys/{key_id:str}", summary="Retrieve an API key", tags=["Keys"])
async def get_key(key_id: str, principal: Principal, keys: KeyService) -> ApiKey:
    return _view(await keys.get(principal, key_id))


@patch("/v1/keys/{key_id:str}", summary="Update a key's name or limits (admin)", tags=["Keys"])
async def update_key(key_id: str, data: KeyUpdate, principal: Principal, keys: KeyService) -> ApiKey:
    """Set limits (``rpm``, ``tpm``, ``rpd``, ``max_concurrency``, ``budget_amount``, ``budget_period``)."""
    _admin(principal)
    changes: dict[str, Any] = msgspec.structs.asdict(data)
    return _view(await keys.update(principal, key_id, {k: v for k, v in changes.items() if v is not None}))


@delete("/v1/keys/{key_id:str}", summary="Revoke an API key", tags=["Keys"], status_code=200)
async def revoke_key(key_id: str, principal: Principal, keys: KeyService) -> KeyDeleted:
    """Revoke at once; the admin may revoke any key, a tenant its own tenant's keys."""
    await keys.revoke(principal, key_id)
    return KeyDeleted(id=key_id)


@post("/v1/keys/{key_id:str}/rotate", summary="Rotate an API key", tags=["Keys"], status_code=201)
async def rotate_key(key_id: str, principal: Principal, keys: KeyService) -> ApiKey:
    """A new secret with the same limits; the old secret keeps working for the rotation grace period."""
    issued = await keys.rotate(principal, key_id)
    return _view(issued.row, issued.secret)


key_handlers = [create_key, list_keys, get_key, update_key, revoke_key, rotate_key]
