"""The management API of endpoints and deployments: create or update (idempotent ``PUT``), list, get, delete.

An endpoint belongs to one tenant; another tenant's is a 404, as if it did not exist, and its name is taken
(409) because names are global. Weight changes run in one transaction that reads the endpoint row for
update, so concurrent changes cannot leave traffic summing to anything but 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from endpoints.keys import KEY_TYPES, Sign, derive, new_nonce
from endpoints.rules import check_endpoint_name, check_name, check_weights, holds_traffic
from endpoints.tables import DeploymentRow, EndpointRow
from meterway.errors import Conflict, InvalidRequest, NotFound, PermissionDenied

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    CheckModel = Callable[[str, str], Awaitable[None]]  # (model, tenant): raises when the tenant cannot use it


@dataclass(frozen=True)
class Caller:
    """Who manages: a tenant (``tenant``) or the platform admin (``tenant`` None)."""

    tenant: str | None

    def owner(self, requested: str | None) -> str:
        """The tenant a new endpoint belongs to: the caller's own, or the one the admin names."""
        if self.tenant is None:
            if requested is None:
                raise InvalidRequest("the admin names the endpoint's owner in `tenant`", param="tenant")
            return requested
        if requested not in (None, self.tenant):
            raise PermissionDenied("a tenant key manages only its own tenant's endpoints")
        return self.tenant

    def sees(self, row: EndpointRow) -> bool:
        return self.tenant is None or row.tenant == self.tenant


@dataclass(frozen=True)
class DeploymentSpec:
    """A deployment as it should be: its model, capacity and own limits (None: unlimited)."""

    model: str
    capacity: str = "serverless"
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the request path needs of an endpoint: owner, weights, deployments, limits and key nonces."""

    name: str
    tenant: str
    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    deployments: dict[str, DeploymentSpec]
    nonces: dict[str, str]  # key type -> nonce
    max_concurrency: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    kind: str
    description: str
    auth_mode: str
    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    tenant: str | None = None
    max_concurrency: int | None = None


class EndpointService:
    """Endpoints and deployments in the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], check_model: CheckModel, sign: Sign) -> None:
        self._sessions, self._check_model, self._sign = sessions, check_model, sign
        self._changed: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed change (the router's cache forgets what it holds)."""
        self._changed.append(listener)

    def _notify(self) -> None:
        for listener in self._changed:
            listener()

    async def put(self, caller: Caller, name: str, spec: EndpointSpec) -> dict[str, Any]:
        check_endpoint_name(name)
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await self._locked(session, name)
            if row is not None and not caller.sees(row):
                raise Conflict(f"the endpoint name {name!r} is taken", param="name")
            owner = caller.owner(spec.tenant) if row is None else row.tenant
            if row is not None and spec.tenant not in (None, row.tenant):
                raise Conflict(f"endpoint {name!r} belongs to another tenant", param="tenant")
            deployments = await self._deployments(session, name)
            check_weights(spec.traffic, spec.mirror_traffic, {d.name for d in deployments})
            if row is None:
                row = EndpointRow(name=name, tenant=owner, created_at=now, primary_nonce=new_nonce(),
                                  secondary_nonce=new_nonce())
                session.add(row)
            row.kind, row.description, row.auth_mode = spec.kind, spec.description, spec.auth_mode
            row.traffic, row.mirror_traffic, row.updated_at = dict(spec.traffic), dict(spec.mirror_traffic), now
            row.max_concurrency = spec.max_concurrency
            body = endpoint_body(row, deployments)
        self._notify()
        return body

    async def all(self, caller: Caller) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            query = select(EndpointRow).order_by(EndpointRow.name)
            if caller.tenant is not None:
                query = query.where(EndpointRow.tenant == caller.tenant)
            rows = (await session.execute(query)).scalars().all()
            return [endpoint_body(row, await self._deployments(session, row.name)) for row in rows]

    async def get(self, caller: Caller, name: str) -> dict[str, Any]:
        async with self._sessions() as session:
            row = await self._visible(session, caller, name)
            return endpoint_body(row, await self._deployments(session, name))

    async def delete(self, caller: Caller, name: str) -> None:
        async with self._sessions() as session, session.begin():
            row = await self._visible(session, caller, name, lock=True)
            for deployment in await self._deployments(session, name):
                await session.delete(deployment)
            await session.delete(row)
        self._notify()

    async def put_deployment(self, caller: Caller, endpoint: str, name: str, spec: DeploymentSpec) -> dict[str, Any]:
        check_name(name, "deployment")
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            owner = await self._visible(session, caller, endpoint, lock=True)
            await self._check_model(spec.model, owner.tenant)
            row = await session.get(DeploymentRow, f"{endpoint}/{name}")
            if row is None:
                row = DeploymentRow(id=f"{endpoint}/{name}", endpoint=endpoint, name=name, created_at=now)
                session.add(row)
            row.model, row.capacity, row.updated_at = spec.model, spec.capacity, now
            row.rpm, row.tpm, row.max_concurrency = spec.rpm, spec.tpm, spec.max_concurrency
            body = deployment_body(row)
        self._notify()
        return body

    async def get_deployment(self, caller: Caller, endpoint: str, name: str) -> dict[str, Any]:
        async with self._sessions() as session:
            await self._visible(session, caller, endpoint)
            return deployment_body(await self._deployment(session, endpoint, name))

    async def delete_deployment(self, caller: Caller, endpoint: str, name: str) -> None:
        async with self._sessions() as session, session.begin():
            owner = await self._visible(session, caller, endpoint, lock=True)
            row = await self._deployment(session, endpoint, name)
            if holds_traffic(name, owner.traffic, owner.mirror_traffic):
                raise Conflict(f"deployment {name!r} still takes traffic; move its traffic (and mirror "
                               "traffic) to 0 first", param="deployment")
            await session.delete(row)
        self._notify()

    async def keys(self, caller: Caller, name: str) -> dict[str, str]:
        """The endpoint's primary and secondary keys."""
        async with self._sessions() as session:
            return self._keys(await self._visible(session, caller, name))

    async def regenerate(self, caller: Caller, name: str, key_type: str) -> dict[str, str]:
        """Replace one key; the other keeps working."""
        async with self._sessions() as session, session.begin():
            row = await self._visible(session, caller, name, lock=True)
            setattr(row, f"{key_type}_nonce", new_nonce())
            row.updated_at = datetime.now(UTC)
            keys = self._keys(row)
        self._notify()
        return keys

    def _keys(self, row: EndpointRow) -> dict[str, str]:
        return {f"{key_type}_key": derive(self._sign, row.name, key_type, getattr(row, f"{key_type}_nonce"))
                for key_type in KEY_TYPES}

    async def snapshots(self, names: list[str]) -> dict[str, Snapshot]:
        """The endpoints among ``names`` that exist, as the request path sees them (any owner)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(EndpointRow).where(EndpointRow.name.in_(names)))).scalars()
            found = {row.name: row for row in rows}
            query = select(DeploymentRow).where(DeploymentRow.endpoint.in_(list(found)))
            deployments: dict[str, dict[str, DeploymentSpec]] = {name: {} for name in found}
            for d in (await session.execute(query)).scalars():
                deployments[d.endpoint][d.name] = DeploymentSpec(d.model, d.capacity, d.rpm, d.tpm, d.max_concurrency)
        return {name: Snapshot(name, row.tenant, dict(row.traffic), dict(row.mirror_traffic), deployments[name],
                               {t: getattr(row, f"{t}_nonce") for t in KEY_TYPES}, row.max_concurrency)
                for name, row in found.items()}

    async def _locked(self, session: AsyncSession, name: str) -> EndpointRow | None:
        query = select(EndpointRow).where(EndpointRow.name == name).with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def _visible(self, session: AsyncSession, caller: Caller, name: str, *,
                       lock: bool = False) -> EndpointRow:
        row = await self._locked(session, name) if lock else await session.get(EndpointRow, name)
        if row is None or not caller.sees(row):
            raise NotFound(f"endpoint {name!r} does not exist", param="endpoint")
        return row

    async def _deployment(self, session: AsyncSession, endpoint: str, name: str) -> DeploymentRow:
        row = await session.get(DeploymentRow, f"{endpoint}/{name}")
        if row is None:
            raise NotFound(f"deployment {name!r} of endpoint {endpoint!r} does not exist", param="deployment")
        return row

    async def _deployments(self, session: AsyncSession, endpoint: str) -> list[DeploymentRow]:
        query = select(DeploymentRow).where(DeploymentRow.endpoint == endpoint).order_by(DeploymentRow.name)
        return list((await session.execute(query)).scalars().all())


def _seconds(moment: datetime) -> int:
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def endpoint_body(row: EndpointRow, deployments: list[DeploymentRow]) -> dict[str, Any]:
    return {"name": row.name, "object": "endpoint", "kind": row.kind, "owner": row.tenant,
            "description": row.description, "auth_mode": row.auth_mode, "traffic": row.traffic,
            "mirror_traffic": row.mirror_traffic, "max_concurrency": row.max_concurrency,
            "deployments": [deployment_body(d) for d in deployments],
            "created_at": _seconds(row.created_at), "updated_at": _seconds(row.updated_at)}


def deployment_body(row: DeploymentRow) -> dict[str, Any]:
    # A serverless deployment runs on the shared pool, which loads its model on the first call: always ready.
    return {"name": row.name, "object": "deployment", "endpoint": row.endpoint, "model": row.model,
            "capacity": row.capacity, "rpm": row.rpm, "tpm": row.tpm, "max_concurrency": row.max_concurrency,
            "state": "ready", "created_at": _seconds(row.created_at),
            "updated_at": _seconds(row.updated_at)}
