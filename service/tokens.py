"""Callers with OpenID Connect tokens: a verified token (``identity.tokens``) becomes the request's principal.

A token of the platform issuer (settings) is the admin. A tenant issuer's token acts for that tenant, under
the key id ``token:<tenant>`` (its limits: the key defaults under the tenant's ceiling, like a key without
limits of its own), with the roles of its role claim and its subject, which its usage records. Issuers and
tenant ceilings are kept in ``WarmCache`` s: a changed or deleted issuer holds at every replica within
``FRESH_S``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from identity.jwks import JwksCache
from identity.tokens import IssuerConfig, TokenVerifier, refused
from service.auth import Principal
from service.tables import TenantRow
from service.throttle import KeyLimits
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from identity.service import IdentityService
    from meterway.settings import AuthSettings, LimitSettings

FRESH_S, REFRESH_S, ACTIVE_S = 2.0, 1.0, 300.0
TOKEN_KEY_PREFIX = "token:"


def token_key_id(tenant: str) -> str:
    """The key id a tenant's token callers are metered and limited under."""
    return TOKEN_KEY_PREFIX + tenant


class TokenAuth:
    """Bearer JWTs to principals, over the tenants' issuers and the platform's."""

    def __init__(self, identities: IdentityService, sessions: async_sessionmaker[AsyncSession],
                 auth: AuthSettings, defaults: LimitSettings, client: httpx.AsyncClient | None = None) -> None:
        self._identities, self._sessions, self._defaults = identities, sessions, defaults
        self._platform = IssuerConfig(auth.platform_issuer, auth.platform_audience) if auth.platform_issuer \
            else None
        self._issuers: WarmCache[str, IssuerConfig] = WarmCache(
            self._issuer, identities.issuers, fresh_s=FRESH_S, refresh_s=REFRESH_S, active_s=ACTIVE_S,
            name="token-issuers")
        identities.on_change(self._issuers.clear)
        self._ceilings: WarmCache[str, KeyLimits] = WarmCache(
            self._ceiling, self._ceilings_of, fresh_s=FRESH_S, refresh_s=REFRESH_S, active_s=ACTIVE_S,
            name="token-tenants")
        self._jwks = JwksCache(client)
        self._verifier = TokenVerifier(self._find, self._jwks)

    def start(self) -> None:
        self._issuers.start()
        self._ceilings.start()

    async def close(self) -> None:
        await self._issuers.close()
        await self._ceilings.close()
        await self._jwks.close()

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token; ``AuthenticationFailed`` (401) saying why otherwise, or
        ``PermissionDenied`` (403) for a tenant token without a known role."""
        identity = await self._verifier.verify(token)
        tenant = identity.issuer.tenant
        if tenant is None:
            return Principal(tenant=None, key_id=None, is_admin=True, roles=identity.roles, subject=identity.subject)
        return Principal(tenant, token_key_id(tenant), limits=await self._ceilings.get(tenant), roles=identity.roles,
                         subject=identity.subject)

    def batch_principals(self, of_key: Callable[[str], Awaitable[Principal]]) -> Callable[[str], Awaitable[Principal]]:
        """Who a batch job's lines run as, by the key id that created it: a token caller's job as its tenant
        (its budgets, no rate limits; inference only), any other as ``of_key`` says."""
        async def principal(key_id: str) -> Principal:
            if not key_id.startswith(TOKEN_KEY_PREFIX):
                return await of_key(key_id)
            tenant = key_id.removeprefix(TOKEN_KEY_PREFIX)
            limits = (await self._ceilings.get(tenant)).budgets_only()
            return Principal(tenant, key_id, limits=limits, roles=frozenset({"invoker"}))

        return principal

    async def _find(self, issuer: str) -> IssuerConfig:
        if self._platform is not None and issuer == self._platform.issuer:
            return self._platform
        return await self._issuers.get(issuer)

    async def _issuer(self, issuer: str) -> IssuerConfig:
        found = await self._identities.issuers([issuer])
        if issuer not in found:
            raise refused("its issuer (iss) is not configured for any tenant")
        return found[issuer]

    async def _ceiling(self, tenant: str) -> KeyLimits:
        return (await self._ceilings_of([tenant]))[tenant]

    async def _ceilings_of(self, tenants: list[str]) -> dict[str, KeyLimits]:
        """Each tenant's token limits: the key defaults under the tenant's ceiling (none without a row)."""
        async with self._sessions() as session:
            rows = {row.id: row for row in await session.scalars(select(TenantRow).where(TenantRow.id.in_(tenants)))}
        return {tenant: KeyLimits.from_row(None, defaults=self._defaults, tenant_row=rows.get(tenant))
                for tenant in tenants}
