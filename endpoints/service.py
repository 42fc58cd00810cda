"""The management API of endpoints and deployments: create or update (idempotent ``PUT``), list, get, delete.

An endpoint belongs to one tenant; another tenant's is a 404, as if it did not exist, and its name is taken
(409) because names are global. Weight changes run in one transaction that reads the endpoint row for
update, so concurrent changes cannot leave traffic summing to anything but 100. A deployment is deleted only
once its endpoint's weights have held still for ``drain_s`` (as long as a replica may route by an older
snapshot), so no replica routes a request to a deployment that is gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from endpoints.keys import KEY_TYPES, Sign, derive, new_nonce
from endpoints.rules import (
    DEDICATED_ONLY,
    check_capacity,
    check_endpoint_name,
    check_kind,
    check_name,
    check_weights,
    holds_traffic,
)
from endpoints.scaling import DEFAULT_COOLDOWN_S, DEFAULT_TARGET_CONCURRENCY, Bounds
from endpoints.tables import DeploymentRow, EndpointRow
from meterway.errors import Conflict, InvalidRequest, NotFound, PermissionDenied

DRAIN_ATTEMPTS = 5

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    # (endpoint, deployment, tenant, spec): raises when the owner cannot use the model or the capacity cannot
    # be had (it also takes the capacity: dedicated instances start loading before the change commits).
    CheckDeployment = Callable[[str, str, str, "DeploymentSpec"], Awaitable[None]]


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
    description: str = ""
    instance_type: str | None = None  # dedicated capacity only (from here on)
    instance_count: int | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    target_concurrency: int | None = None
    cooldown_s: int | None = None

    @property
    def dedicated(self) -> bool:
        return self.capacity == "dedicated"

    @property
    def bounds(self) -> Bounds:
        """Its instance settings, defaults filled in (dedicated capacity only)."""
        return Bounds(self.instance_count, self.min_instances or 1, self.max_instances or 1,
                      self.target_concurrency or DEFAULT_TARGET_CONCURRENCY, self.cooldown_s or DEFAULT_COOLDOWN_S)

    def normalized(self) -> DeploymentSpec:
        """Validated, with the defaults of dedicated capacity written out (what is stored and shown)."""
        check_capacity(self.capacity, {name: getattr(self, name) for name in DEDICATED_ONLY})
        if not self.dedicated:
            return self
        typed = replace(self, instance_type=self.instance_type or "cpu")
        if self.instance_count is not None:
            return typed
        return replace(typed, target_concurrency=typed.bounds.target, cooldown_s=int(typed.bounds.cooldown_s))


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
    kind: str = "online"
    default_deployment: str | None = None  # kind batch: where new jobs run
    auth_mode: str = "key"  # what its scoring_uri takes: "key", "token" or "key_or_token"


@dataclass(frozen=True)
class EndpointSpec:
    kind: str
    description: str
    auth_mode: str
    traffic: dict[str, int]
    mirror_traffic: dict[str, int]
    tenant: str | None = None
    max_concurrency: int | None = None
    default_deployment: str | None = None  # kind batch; None keeps the one it has


class EndpointService:
    """Endpoints and deployments in the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], check: CheckDeployment, sign: Sign, *,
                 drain_s: float = 0.0) -> None:
        self._sessions, self._check, self._sign = sessions, check, sign
        self._drain_s = drain_s
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
            names = {d.name for d in deployments}
            check_weights(spec.traffic, spec.mirror_traffic, names)
            check_kind(spec.kind, row.kind if row is not None else None, spec.traffic, spec.mirror_traffic,
                       spec.default_deployment, names)
            if row is None:
                row = EndpointRow(name=name, tenant=owner, created_at=now, primary_nonce=new_nonce(),
                                  secondary_nonce=new_nonce())
                session.add(row)
            row.kind, row.description, row.auth_mode = spec.kind, spec.description, spec.auth_mode
            row.traffic, row.mirror_traffic, row.updated_at = dict(spec.traffic), dict(spec.mirror_traffic), now
            row.max_concurrency = spec.max_concurrency
            row.default_deployment = spec.default_deployment or row.default_deployment
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
        spec = spec.normalized()
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            owner = await self._visible(session, caller, endpoint, lock=True)
            await self._check(endpoint, name, owner.tenant, spec)
            row = await session.get(DeploymentRow, f"{endpoint}/{name}")
            if row is None:
                row = DeploymentRow(id=f"{endpoint}/{name}", endpoint=endpoint, name=name, created_at=now)
                session.add(row)
            for field in SPEC_FIELDS:
                setattr(row, field, getattr(spec, field))
            row.updated_at = now
            if owner.kind == "batch" and owner.default_deployment is None:
                owner.default_deployment = name  # a batch endpoint's first deployment is its default
            body = deployment_body(row)
        self._notify()
        return body

    async def get_deployment(self, caller: Caller, endpoint: str, name: str) -> dict[str, Any]:
        async with self._sessions() as session:
            await self._visible(session, caller, endpoint)
            return deployment_body(await self._deployment(session, endpoint, name))

    async def delete_deployment(self, caller: Caller, endpoint: str, name: str) -> None:
        for _attempt in range(DRAIN_ATTEMPTS):
            async with self._sessions() as session, session.begin():
                owner = await self._visible(session, caller, endpoint, lock=True)
                row = await self._deployment(session, endpoint, name)
                if holds_traffic(name, owner.traffic, owner.mirror_traffic):
                    raise Conflict(f"deployment {name!r} still takes traffic; move its traffic (and mirror "
                                   "traffic) to 0 first", param="deployment")
                if owner.default_deployment == name:
                    raise Conflict(f"deployment {name!r} is the endpoint's default_deployment, where new batch "
                                   "jobs run; set another default first", param="deployment")
                still = self._drain_s - (datetime.now(UTC) - _aware(owner.updated_at)).total_seconds()
                if still <= 0:
                    await session.delete(row)
                    break
            await asyncio.sleep(still)  # outside the transaction: weight changes go on meanwhile
        else:
            raise Conflict(f"the weights of endpoint {endpoint!r} keep changing; delete {name!r} once they hold",
                           param="deployment")
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
                deployments[d.endpoint][d.name] = spec_of(d)
        return {name: Snapshot(name, row.tenant, dict(row.traffic), dict(row.mirror_traffic), deployments[name],
                               {t: getattr(row, f"{t}_nonce") for t in KEY_TYPES}, row.max_concurrency, row.kind,
                               row.default_deployment, row.auth_mode)
                for name, row in found.items()}

    async def dedicated(self) -> list[tuple[str, str, str, DeploymentSpec]]:
        """Every dedicated deployment, any owner: (endpoint, deployment, tenant, spec)."""
        query = (select(DeploymentRow, EndpointRow.tenant).join(EndpointRow, EndpointRow.name == DeploymentRow.endpoint)
                 .where(DeploymentRow.capacity == "dedicated"))
        async with self._sessions() as session:
            return [(d.endpoint, d.name, tenant, spec_of(d)) for d, tenant in (await session.execute(query)).all()]

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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(moment: datetime) -> int:
    return int(_aware(moment).timestamp())


def endpoint_body(row: EndpointRow, deployments: list[DeploymentRow]) -> dict[str, Any]:
    return {"name": row.name, "object": "endpoint", "kind": row.kind, "owner": row.tenant,
            "description": row.description, "auth_mode": row.auth_mode, "traffic": row.traffic,
            "mirror_traffic": row.mirror_traffic, "max_concurrency": row.max_concurrency,
            "default_deployment": row.default_deployment, "deployments": [deployment_body(d) for d in deployments],
            "created_at": _seconds(row.created_at), "updated_at": _seconds(row.updated_at)}


SPEC_FIELDS = tuple(f.name for f in fields(DeploymentSpec))


def spec_of(row: DeploymentRow) -> DeploymentSpec:
    return DeploymentSpec(**{field: getattr(row, field) for field in SPEC_FIELDS})


def deployment_body(row: DeploymentRow) -> dict[str, Any]:
    """The stored deployment; its live ``state`` is the serving side's to add (``service.capacity``)."""
    settings = {field: getattr(row, field) for field in SPEC_FIELDS}
    return {"name": row.name, "object": "deployment", "endpoint": row.endpoint, **settings,
            "created_at": _seconds(row.created_at), "updated_at": _seconds(row.updated_at)}
