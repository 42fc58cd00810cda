"""Dedicated capacity: keeps each dedicated deployment's instances in the pool, scales them, and bills them.

Every ``TICK_S`` the controller reads the dedicated deployments, asks each one's ``endpoints.scaling.Autoscaler``
how many instances it should have given its requests in flight, and provisions that many in the pool; a
deployment that is gone (or became serverless) is released, and its instances drain. Each instance is billed
per started minute from the moment it holds its memory, as a usage event of the instance-minute meter with a
deterministic id (``im-<instance uid>-<minute>``), so a repeated event is one ledger entry.

With several gateway replicas, each one's local pool holds its own instances (and bills them): the count is per
replica until the cluster backend places instances across machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge

from billing.events import UsageEvent
from endpoints.scaling import Autoscaler
from meterway.errors import InsufficientCapacity, InvalidRequest, NotFound
from service.auth import Principal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from billing.prices import PriceBook
    from endpoints.service import DeploymentSpec, EndpointService
    from models.catalog import ModelSpec
    from models.pool.api import GroupView, InstanceView, ModelPool
    from service.inference import UsageRecorder
    from service.resolver import CatalogResolver

log = structlog.get_logger("meterway.capacity")
TICK_S, MINUTE_S, EVENTS_KEPT = 1.0, 60.0, 20


@dataclass
class _Held:
    """What the controller knows of one dedicated deployment (kept after deletion, until its instances are
    billed to the end)."""

    tenant: str
    model: ModelSpec
    spec: DeploymentSpec
    scaler: Autoscaler
    live: bool = True  # still a dedicated deployment in the database
    desired: int = 0  # the instances it should have now
    reason: str | None = None  # why it cannot have the instances it should (memory), if so
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))


class DedicatedCapacity:
    """Dedicated deployments' instances: provisioned, autoscaled, described and billed."""

    def __init__(self, pool: ModelPool, endpoints: EndpointService, resolver: CatalogResolver,
                 meter: UsageRecorder, prices: PriceBook, registry: CollectorRegistry) -> None:
        self._pool, self._endpoints, self._resolver = pool, endpoints, resolver
        self._meter, self._prices = meter, prices
        self._held: dict[str, _Held] = {}
        self._billed: dict[str, int] = {}  # instance uid -> minutes billed
        self._task: asyncio.Task[None] | None = None
        self._instances = Gauge("meterway_deployment_instances", "Instances a dedicated deployment holds",
                                ["endpoint", "deployment"], registry=registry)
        self._scalings = Counter("meterway_deployment_scaling_events", "Dedicated deployments scaled out or in",
                                 ["endpoint", "deployment", "direction"], registry=registry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dedicated-capacity")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._bill()  # the minutes started so far; the pool stops the instances after this

    async def check(self, endpoint: str, name: str, tenant: str, spec: DeploymentSpec) -> None:
        """``EndpointService``'s check of a deployment: a model its owner may call, and, for dedicated capacity,
        an instance type this pool has, a price to bill it by, and instances that fit (taken at once)."""
        model = await self._resolver.resolve(spec.model, Principal(tenant=tenant, key_id=None))
        if not spec.dedicated:
            return
        instance_type = spec.instance_type or "cpu"
        if instance_type not in self._pool.instance_types:
            raise InvalidRequest(f"instance_type {instance_type!r} is not offered here; choose one of "
                                 f"{', '.join(self._pool.instance_types)}", param="instance_type")
        try:
            await self._prices.instance_quote(model.id, instance_type, base_model=model.base)
        except NotFound:
            raise InvalidRequest(f"{model.id} has no price per instance-minute on {instance_type!r}, so dedicated "
                                 "instances of it cannot be billed; the platform admin adds one "
                                 "(POST /v1/prices/instances)", param="instance_type", code="no_price") from None
        group = f"{endpoint}/{name}"
        held = self._held.get(group)
        current = self._count(group) if held is not None and held.model.id == model.id else 0
        count = spec.bounds.fixed or min(max(current, spec.bounds.low), spec.bounds.high)
        try:
            self._pool.provision(group, model, count)
        except InsufficientCapacity as exc:
            param = "instance_count" if spec.instance_count is not None else "min_instances"
            raise InsufficientCapacity(exc.message, param=param) from None
        fresh = self._held[group] = _Held(tenant, model, spec, Autoscaler(spec.bounds), desired=count,
                                          events=held.events if held else deque(maxlen=EVENTS_KEPT))
        self._scaled(group, fresh, current, count, "deployment created" if held is None else "deployment updated")

    def describe(self, body: dict[str, Any]) -> dict[str, Any]:
        """A deployment's body with its live state: ``ready`` for serverless (the shared pool loads its model on
        the first call); for dedicated capacity: creating / updating / ready / failed, its instances and its
        recent scaling events."""
        if body.get("capacity") != "dedicated":
            return {**body, "state": "ready"}
        group = f"{body['endpoint']}/{body['name']}"
        held, view = self._held.get(group), self._pool.instances(group)
        instances = list(view.instances) if view is not None else []
        desired = held.desired if held else 0
        state, reason = _state(instances, desired, held.reason if held else None)
        return {**body, "state": state, "reason": reason, "desired_instances": desired,
                "instances": [_instance(i) for i in instances],
                "scaling_events": list(held.events) if held else []}

    def logs(self, endpoint: str, name: str) -> list[str]:
        return self._pool.instance_logs(f"{endpoint}/{name}")

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:  # a bad tick must not end capacity management for the life of the gateway
                log.exception("dedicated capacity tick failed")
            await asyncio.sleep(TICK_S)

    async def reconcile(self) -> None:
        """One pass: every dedicated deployment at the size it should be, the gone ones released, minutes billed."""
        seen = set()
        for endpoint, name, tenant, spec in await self._endpoints.dedicated():
            group = f"{endpoint}/{name}"
            seen.add(group)
            await self._keep(group, tenant, spec)
        for group, held in self._held.items():
            if group not in seen and held.live:
                held.live, held.desired = False, 0
                self._resize(group, held, 0, "deployment deleted")
        await self._bill()

    async def _keep(self, group: str, tenant: str, spec: DeploymentSpec) -> None:
        held = self._held.get(group)
        if held is None or held.spec != spec or not held.live:  # changed on another replica, or new here
            model = await self._resolver.resolve(spec.model, Principal(tenant=tenant, key_id=None))
            held = self._held[group] = _Held(tenant, model, spec, Autoscaler(spec.bounds),
                                             events=held.events if held else deque(maxlen=EVENTS_KEPT))
        view = self._pool.instances(group)
        current = self._count(group)
        wanted = held.desired = held.scaler.desired(current, view.in_flight if view else 0, time.monotonic())
        if wanted != current or held.reason:
            self._resize(group, held, wanted, "load" if current else "deployment created")

    def _resize(self, group: str, held: _Held, count: int, why: str) -> None:
        current = self._count(group)
        try:
            self._pool.provision(group, held.model, count)
        except InsufficientCapacity as exc:
            if held.reason != exc.message:
                log.warning("dedicated deployment does not fit", deployment=group, reason=exc.message)
            held.reason = exc.message
            return
        held.reason = None
        if count != current:
            self._scaled(group, held, current, count, why)

    def _scaled(self, group: str, held: _Held, before: int, after: int, why: str) -> None:
        held.scaler.changed(time.monotonic())
        endpoint, _, name = group.partition("/")
        self._instances.labels(endpoint, name).set(after)
        if before != after:
            self._scalings.labels(endpoint, name, "out" if after > before else "in").inc()
            held.events.append({"at": int(time.time()), "from": before, "to": after, "reason": why})
            log.info("dedicated deployment scaled", deployment=group, before=before, after=after, reason=why)

    def _count(self, group: str) -> int:
        view = self._pool.instances(group)
        return sum(1 for i in view.instances if i.state != "stopping") if view is not None else 0

    async def _bill(self) -> None:
        """Record every instance-minute started so far (each instance: minute 0 at once, then one a minute)."""
        now, kept = time.time(), set()
        for group, held in list(self._held.items()):  # a deployment PUT may add one while an event is recorded
            view = self._pool.instances(group)
            for instance in _all(view):
                kept.add(instance.uid)
                for minute in range(self._billed.get(instance.uid, 0), _minutes(instance, now)):
                    await self._meter.record(_event(group, held, instance, minute, now))
                    self._billed[instance.uid] = minute + 1
        self._billed = {uid: n for uid, n in self._billed.items() if uid in kept}


def _all(view: GroupView | None) -> tuple[InstanceView, ...]:
    return (*view.instances, *view.stopped) if view is not None else ()


def _minutes(instance: InstanceView, now: float) -> int:
    """Minutes started: while it runs, the current one counts; once stopped, a partial last one does."""
    elapsed = (instance.ended_at or now) - instance.started_at
    if instance.ended_at is None:
        return int(elapsed // MINUTE_S) + 1
    return max(1, math.ceil(elapsed / MINUTE_S))


def _event(group: str, held: _Held, instance: InstanceView, minute: int, now: float) -> UsageEvent:
    start = instance.started_at + minute * MINUTE_S
    end = min(start + MINUTE_S, instance.ended_at or now, now)
    endpoint, _, name = group.partition("/")
    return UsageEvent(request_id=f"im-{instance.uid}-{minute}", tenant=held.tenant, key_id=f"deployment:{group}",
                      model=held.model.id, base_model=held.model.base, endpoint="instances", prompt_tokens=0,
                      completion_tokens=0, started_at=datetime.fromtimestamp(start, UTC),
                      finished_at=datetime.fromtimestamp(max(start, end), UTC), endpoint_name=endpoint,
                      deployment=name, instance_minutes=1, instance_type=held.spec.instance_type or "cpu")


def _state(instances: list[InstanceView], desired: int, reason: str | None) -> tuple[str, str | None]:
    live = [i for i in instances if i.state != "stopping"]
    ready = sum(1 for i in live if i.state == "ready")
    failed = next((i.error for i in live if i.state == "failed"), None)
    if not ready and failed:
        return "failed", failed
    if ready >= desired and len(live) == desired:
        return "ready", reason
    waiting = next((i.id for i in live if i.state == "waiting"), None)
    return ("updating" if ready else "creating"), reason or (f"{waiting} is waiting for memory" if waiting else None)


def _instance(instance: InstanceView) -> dict[str, Any]:
    return {"id": instance.id, "state": instance.state, "in_flight": instance.in_flight,
            "started_at": int(instance.started_at), "error": instance.error}
