"""The tenants' issuers: set (``PUT``, idempotent), get, delete, and the lookup tokens are verified by.

An issuer belongs to at most one tenant (409 for another), and never to a tenant when it is the platform's own
issuer. Its URL is ``https``; plain ``http`` and loopback hosts only in local mode (the tests' issuer runs on
127.0.0.1), and never another private or link-local address, so the gateway is not made to fetch from its own
network on a tenant's say-so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from identity.tables import TenantIdentityRow
from identity.tokens import IssuerConfig
from meterway.errors import Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class IdentitySpec:
    """A tenant's issuer as it should be."""

    issuer: str
    audience: str
    subject_claim: str = "sub"
    roles_claim: str = "roles"


def check_issuer(url: str, *, local: bool) -> None:
    """``InvalidRequest`` unless ``url`` is an issuer URL the gateway may fetch discovery documents from."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError:  # a malformed IPv6 literal or port
        parts, host = urlsplit(""), ""
    printable = all(0x20 < ord(c) < 0x7f for c in url)  # no spaces, controls or raw non-ASCII (IDNs as xn--)
    if not printable or not host or parts.query or parts.fragment or parts.username or parts.password \
            or len(url) > 512:
        raise InvalidRequest("issuer must be an absolute URL (scheme, host, optional path; no query, fragment "
                             "or credentials) of at most 512 characters", param="issuer")
    loopback = host in _LOCAL_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback and local):
        raise InvalidRequest("issuer must be an https URL (http only for a loopback host in local mode)",
                             param="issuer")
    if loopback and not local:
        raise InvalidRequest("issuer may not be a loopback host outside local mode", param="issuer")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not address.is_loopback and (address.is_private or address.is_link_local or address.is_reserved
                                    or address.is_multicast or address.is_unspecified):
        raise InvalidRequest("issuer may not be a private, link-local or reserved address", param="issuer")


def identity_body(row: TenantIdentityRow) -> dict[str, Any]:
    return {"object": "tenant.identity", "tenant": row.tenant, "issuer": row.issuer, "audience": row.audience,
            "subject_claim": row.subject_claim, "roles_claim": row.roles_claim,
            "created_at": _seconds(row.created_at), "updated_at": _seconds(row.updated_at)}


class IdentityService:
    """Tenants' issuers in the database; ``platform_issuer`` (settings) is reserved for the admins'."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, local: bool, platform_issuer: str = "") -> None:
        self._sessions, self._local, self._platform = sessions, local, platform_issuer
        self._changed: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed change (the token cache forgets its issuers)."""
        self._changed.append(listener)

    async def put(self, tenant: str, spec: IdentitySpec) -> dict[str, Any]:
        """Set ``tenant``'s issuer; 409 if another tenant (or the platform) has it."""
        check_issuer(spec.issuer, local=self._local)
        if self._platform and spec.issuer == self._platform:
            raise Conflict("this issuer is the platform's own (its tokens are the admin's)", param="issuer")
        now = datetime.now(UTC)
        try:
            async with self._sessions.begin() as session:
                await self._refuse_taken(session, tenant, spec.issuer)
                row = await session.get(TenantIdentityRow, tenant)
                if row is None:
                    row = TenantIdentityRow(tenant=tenant, created_at=now)
                    session.add(row)
                row.issuer, row.audience, row.updated_at = spec.issuer, spec.audience, now
                row.subject_claim, row.roles_claim = spec.subject_claim, spec.roles_claim
                await session.flush()
                body = identity_body(row)
        except IntegrityError:  # another tenant took it meanwhile (the unique constraint)
            raise _taken() from None
        self._notify()
        return body

    async def get(self, tenant: str) -> dict[str, Any]:
        async with self._sessions() as session:
            row = await session.get(TenantIdentityRow, tenant)
        if row is None:
            raise NotFound(f"tenant {tenant!r} has no identity provider", param="tenant")
        return identity_body(row)

    async def delete(self, tenant: str) -> None:
        """Forget ``tenant``'s issuer: its tokens are refused from now on (at other replicas within seconds)."""
        async with self._sessions.begin() as session:
            row = await session.get(TenantIdentityRow, tenant)
            if row is None:
                raise NotFound(f"tenant {tenant!r} has no identity provider", param="tenant")
            await session.delete(row)
        self._notify()

    async def issuers(self, issuers: list[str]) -> dict[str, IssuerConfig]:
        """The configurations of those ``issuers`` that belong to a tenant."""
        query = select(TenantIdentityRow).where(TenantIdentityRow.issuer.in_(issuers))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        return {row.issuer: IssuerConfig(row.issuer, row.audience, row.tenant, row.subject_claim, row.roles_claim)
                for row in rows}

    async def _refuse_taken(self, session: AsyncSession, tenant: str, issuer: str) -> None:
        query = select(TenantIdentityRow.tenant).where(TenantIdentityRow.issuer == issuer)
        owner = (await session.execute(query)).scalar_one_or_none()
        if owner is not None and owner != tenant:
            raise _taken()

    def _notify(self) -> None:
        for listener in self._changed:
            listener()


def _taken() -> Conflict:
    return Conflict("this issuer belongs to another tenant: a token maps to exactly one tenant", param="issuer")


def _seconds(moment: datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
