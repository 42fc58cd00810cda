"""API keys: create (secret shown once), list, update limits, revoke, rotate with grace, authenticate."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from meterway.errors import AuthenticationFailed, InvalidRequest, NotFound
from meterway.roles import TENANT_ROLES
from service.auth import KeyHasher, Principal, looks_like_key, lookup_prefix, new_secret
from service.tables import ApiKeyRow, TenantRow
from service.throttle import KeyLimits
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from meterway.settings import LimitSettings

LIMIT_FIELDS = ("rpm", "tpm", "rpd", "max_concurrency", "budget_amount", "budget_period")
SCOPE_FIELDS = ("role", "models", "endpoints")  # what the key may do, and the only models and endpoints
ADMIN = frozenset({"admin"})
# Verified keys are kept in ``WarmCache``: another replica may still accept a key revoked elsewhere for
# FRESH_S; keys used in the last ACTIVE_S are re-verified, in one query, every REFRESH_S.
FRESH_S, REFRESH_S, ACTIVE_S = 2.0, 1.0, 300.0


@dataclass(frozen=True)
class IssuedKey:
    """A key row and, right after creation or rotation only, its secret."""

    row: ApiKeyRow
    secret: str | None = None


@dataclass(frozen=True)
class AuthenticatedKey:
    """What authentication yields: the principal and the key's (and tenant's) limits."""

    principal: Principal
    key: ApiKeyRow | None
    tenant: TenantRow | None


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class KeyService:
    """Key lifecycle and authentication over the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], hasher: KeyHasher, admin_key: str,
                 rotation_grace_s: int, limit_defaults: LimitSettings | None = None) -> None:
        self._sessions = sessions
        self._defaults = limit_defaults
        self._hasher = hasher
        self._admin_digest = hasher.digest(admin_key)
        self._grace = timedelta(seconds=rotation_grace_s)
        self._verified: WarmCache[tuple[str, str], AuthenticatedKey] = WarmCache(
            self._lookup, self._verify_many, fresh_s=FRESH_S, refresh_s=REFRESH_S, active_s=ACTIVE_S,
            name="api-keys")

    def start(self) -> None:
        """Start re-verifying the keys in use in the background (``WarmCache``)."""
        self._verified.start()

    async def close(self) -> None:
        await self._verified.close()

    async def reverify(self) -> None:
        """Verify the keys in use again now (what the background task does every ``REFRESH_S``)."""
        await self._verified.refresh()

    async def authenticate(self, secret: str | None) -> AuthenticatedKey:
        """Resolve a secret to its principal, or raise ``AuthenticationFailed`` (401)."""
        if not secret:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer "
                                       "<key>' or in the 'api-key' header.", code="missing_api_key")
        digest = self._hasher.digest(secret)
        if secrets.compare_digest(digest, self._admin_digest):
            return AuthenticatedKey(Principal(tenant=None, key_id=None, is_admin=True, roles=ADMIN), None, None)
        if not looks_like_key(secret):
            raise _incorrect_key()
        return await self._verified.get((lookup_prefix(secret), digest))

    async def _lookup(self, key: tuple[str, str]) -> AuthenticatedKey:
        found = await self._verify_many([key])
        if key not in found:
            raise _incorrect_key()
        return found[key]

    async def _verify_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AuthenticatedKey]:
        """The keys (lookup prefix, digest of the secret) that are still valid, with their tenants' limits."""
        async with self._sessions() as session:
            query = select(ApiKeyRow).where(ApiKeyRow.prefix.in_({prefix for prefix, _ in keys}))
            rows = {row.prefix: row for row in await session.scalars(query)}
            owners = {row.tenant for row in rows.values()}
            tenants = {t.id: t for t in await session.scalars(select(TenantRow).where(TenantRow.id.in_(owners)))}
        found: dict[tuple[str, str], AuthenticatedKey] = {}
        for prefix, digest in keys:
            row = rows.get(prefix)
            if row is not None and secrets.compare_digest(digest, row.secret_hash) and _usable(row):
                tenant = tenants.get(row.tenant)
                limits = KeyLimits.from_row(row, defaults=self._defaults, tenant_row=tenant)
                found[(prefix, digest)] = AuthenticatedKey(key_principal(row, limits), row, tenant)
        return found

    async def batch_principal(self, key_id: str) -> Principal:
        """Who a batch job's lines run as: the key that created it, with its budgets and none of its rate
        limits; ``AuthenticationFailed`` once that key is revoked (the job's remaining lines do not run)."""
        if key_id == "admin":
            return Principal(tenant=None, key_id=None, is_admin=True, roles=ADMIN)
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
            tenant = await session.get(TenantRow, row.tenant) if row is not None else None
        if row is None or not _usable(row):
            raise AuthenticationFailed("the API key that created this batch was revoked; its remaining lines "
                                       "are not run", code="invalid_api_key")
        limits = KeyLimits.from_row(row, defaults=self._defaults, tenant_row=tenant)
        return key_principal(row, limits.budgets_only())

    async def create(self, tenant: str, name: str, limits: dict[str, Any] | None = None) -> IssuedKey:
        """A new key for ``tenant`` (created if new); the secret is returned this once. ``limits`` also carries
        its ``role``, ``models`` and ``endpoints`` scope and ``expires_at`` (unix seconds, in the future)."""
        check_name("tenant", tenant)
        check_name("name", name, allow_spaces=True)
        async with self._sessions.begin() as session:
            if await session.get(TenantRow, tenant) is None:
                session.add(TenantRow(id=tenant, created_at=_now()))
            return await self._insert(session, tenant, name, limits or {})

    async def _insert(self, session: AsyncSession, tenant: str, name: str, limits: dict[str, Any]) -> IssuedKey:
        secret = new_secret()
        row = ApiKeyRow(id=f"key_{secrets.token_hex(12)}", tenant=tenant, name=name,
                        prefix=lookup_prefix(secret), secret_hash=self._hasher.digest(secret),
                        created_at=_now(), **check_limits(limits), **check_scope(limits))
        session.add(row)
        await session.flush()
        return IssuedKey(row, secret)

    async def list(self, principal: Principal, tenant: str | None = None, *,
                   include_revoked: bool = False) -> list[ApiKeyRow]:
        """Keys the caller may see: the admin sees all (or one tenant's), a tenant its own; revoked keys only
        when asked for (an audit)."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        scope = tenant if principal.is_admin else principal.tenant
        if scope is not None:
            query = query.where(ApiKeyRow.tenant == scope)
        async with self._sessions() as session:
            return list(await session.scalars(query))

    async def get(self, principal: Principal, key_id: str) -> ApiKeyRow:
        """One live key the caller may see; another tenant's key is a 404, like a missing or revoked one
        (``DELETE`` revokes: the key is gone from the API, its row stays for the audit)."""
        async with self._sessions() as session:
            row = await session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None or not (principal.is_admin or row.tenant == principal.tenant):
            raise NotFound(f"No API key with id '{key_id}'.", param="key_id")
        return row

    async def update(self, principal: Principal, key_id: str, changes: dict[str, Any]) -> ApiKeyRow:
        """Change a key's name, limits, role, scope or expiry (admin)."""
        await self.get(principal, key_id)
        async with self._sessions.begin() as session:
            row = await session.get(ApiKeyRow, key_id)
            assert row is not None
            for field, value in {**check_limits(changes, partial=True), **check_scope(changes, partial=True)}.items():
                setattr(row, field, value)
            if "name" in changes and changes["name"] is not None:
                check_name("name", changes["name"], allow_spaces=True)
                row.name = changes["name"]
        self._verified.clear()
        return row

    async def revoke(self, principal: Principal, key_id: str) -> ApiKeyRow:
        """Revoke at once; the secret is refused from now on (within the cache window on other replicas)."""
        await self.get(principal, key_id)
        async with self._sessions.begin() as session:
            row = await session.get(ApiKeyRow, key_id)
            assert row is not None
            row.revoked_at = _now()
        self._verified.clear()
        return row

    async def rotate(self, principal: Principal, key_id: str) -> IssuedKey:
        """A new secret with the same tenant, name, limits, role, scope and expiry; the old one works for the
        grace period."""
        old = await self.get(principal, key_id)
        if not _usable(old):
            raise InvalidRequest("A revoked or expired key cannot be rotated.", param="key_id")
        async with self._sessions.begin() as session:
            current = await session.get(ApiKeyRow, key_id)
            assert current is not None
            limits = {field: getattr(current, field) for field in (*LIMIT_FIELDS, *SCOPE_FIELDS)}
            limits["expires_at"] = _aware(current.expires_at)
            current.expires_at = min(_aware(current.expires_at) or _now() + self._grace, _now() + self._grace)
            issued = await self._insert(session, current.tenant, current.name, limits)
        self._verified.clear()
        return issued

    def forget_cached(self) -> None:
        """Drop cached authentications (after a tenant's limits change)."""
        self._verified.clear()


def key_principal(row: ApiKeyRow, limits: KeyLimits) -> Principal:
    """Who a request (or a batch line) with this key acts as: its tenant, role, scope and limits."""
    return Principal(row.tenant, row.id, limits=limits, roles=frozenset({row.role or "owner"}),
                     models=None if row.models is None else frozenset(row.models),
                     endpoints=None if row.endpoints is None else frozenset(row.endpoints))


def _incorrect_key() -> AuthenticationFailed:
    return AuthenticationFailed("Incorrect API key provided. You can find your API keys with your platform "
                                "administrator.")


def _usable(row: ApiKeyRow) -> bool:
    expires = _aware(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > _now())


def check_limits(values: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validated limit fields (``rpm`` … ``budget_period``) from ``values``; unknown fields are ignored."""
    chosen = {f: values.get(f) for f in LIMIT_FIELDS if not partial or f in values}
    for field in ("rpm", "tpm", "rpd", "max_concurrency"):
        value = chosen.get(field)
        if value is not None and int(value) < 1:
            raise InvalidRequest(f"'{field}' must be a positive integer or null.", param=field)
    if chosen.get("budget_amount") is not None:
        try:
            amount = Decimal(str(chosen["budget_amount"]))
        except ArithmeticError as exc:
            raise InvalidRequest("'budget_amount' must be a decimal string.", param="budget_amount") from exc
        if not amount.is_finite() or amount < 0:
            raise InvalidRequest("'budget_amount' must be a non-negative decimal.", param="budget_amount")
        chosen["budget_amount"] = amount
    if chosen.get("budget_period") not in (None, "day", "month"):
        raise InvalidRequest("'budget_period' must be 'day' or 'month'.", param="budget_period")
    if chosen.get("budget_amount") is not None and not chosen.get("budget_period") and not partial:
        chosen["budget_period"] = "month"
    return chosen


def check_scope(values: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validated ``role``, ``models``, ``endpoints`` and ``expires_at`` from ``values`` (partial: only those
    given); a role is one of ``meterway.roles.TENANT_ROLES``, and an expiry (unix seconds) is in the future."""
    chosen: dict[str, Any] = {f: values.get(f) for f in SCOPE_FIELDS if not partial or f in values}
    if "role" in chosen:
        chosen["role"] = chosen["role"] or "owner"
        if chosen["role"] not in TENANT_ROLES:
            raise InvalidRequest(f"'role' must be one of {', '.join(TENANT_ROLES)}.", param="role")
    for field in ("models", "endpoints"):
        if (listed := chosen.get(field)) is not None:
            chosen[field] = sorted(set(listed))
    expiry = _expiry(values.get("expires_at"))
    if expiry is not None or not partial:  # an expiry is never lifted (a rotated key's old secret stays bounded)
        chosen["expires_at"] = expiry
    return chosen


def _expiry(moment: datetime | float | None) -> datetime | None:
    """An expiry given as unix seconds (or a moment), refused unless it is in the future."""
    if moment is None:
        return None
    expiry = _aware(moment) if isinstance(moment, datetime) else datetime.fromtimestamp(moment, UTC)
    if expiry is None or expiry <= _now():
        raise InvalidRequest("'expires_at' must be in the future (unix seconds).", param="expires_at")
    return expiry


def check_name(field: str, value: str, *, allow_spaces: bool = False) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_." + (" " if allow_spaces else ""))
    if not value or len(value) > 64 or not set(value) <= allowed:
        raise InvalidRequest(f"'{field}' must be 1-64 characters of letters, digits, '-', '_' or '.'.",
                             param=field)
