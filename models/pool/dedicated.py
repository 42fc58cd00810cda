"""Dedicated capacity: the instances (workers) a dedicated deployment holds in the pool, whatever shared traffic does.

A group is one deployment (``"support/blue"``); each of its instances is a ``Resident`` of its own, pinned: it
counts against the memory budget from the moment the group takes it, is never evicted or unloaded when idle,
and is loaded again when its worker dies. ``provision`` sets the count: instances that cannot fit beside the
other dedicated ones are refused (``InsufficientCapacity``) before anything changes; removed ones take no new
request and unload when their last one ends. A request goes to the ready instance with the fewest in flight.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meterway.errors import InsufficientCapacity, ModelOverloaded, Unavailable
from models.pool.adapters import AdapterSlots
from models.pool.api import GroupView, InstanceView, ModelState
from models.pool.residency import Resident

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from models.catalog import ModelSpec

RETRY_FAILED_S = 30.0  # a failed load is tried again after this long (a broken model must not load in a loop)
LOG_LINES, RETIRED_KEPT = 500, 64


@dataclass(eq=False)
class _Instance:
    id: str
    resident: Resident
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    failed_at: float = 0.0
    waiting: str | None = None  # why it cannot load yet (the memory is held)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def view(self) -> InstanceView:
        r = self.resident
        state = "stopped" if self.ended_at else "stopping" if not r.pinned else str(r.state)
        if state == ModelState.COLD:
            state = "failed" if r.error else "waiting"
        return InstanceView(self.id, self.uid, state, r.admitted, r.host.pid if r.host else None, self.started_at,
                            self.ended_at, r.error)


@dataclass(eq=False)
class _Group:
    spec: ModelSpec
    live: list[_Instance] = field(default_factory=list)
    retiring: list[_Instance] = field(default_factory=list)
    stopped: deque[_Instance] = field(default_factory=lambda: deque(maxlen=RETIRED_KEPT))
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    serial: itertools.count[int] = field(default_factory=itertools.count)


class InstanceGroups:
    """The pool's dedicated deployments; the pool lends its residents, budget, loader and unloader."""

    def __init__(self, residents: dict[str, Resident], budget_bytes: int, footprint: Callable[[ModelSpec], int],
                 start_load: Callable[[Resident], None], unload: Callable[[Resident, str], asyncio.Future[None]]):
        self._residents, self._budget, self._footprint = residents, budget_bytes, footprint
        self._start_load, self._unload = start_load, unload
        self._groups: dict[str, _Group] = {}

    def provision(self, group: str, spec: ModelSpec, count: int) -> None:
        """Hold ``count`` instances of ``spec`` for ``group`` (0 releases it); a new model replaces them all."""
        current = self._groups.get(group)
        if count:
            self._check_fit(group, spec, count)
        if current is not None and current.spec.id != spec.id:
            self._retire(current, len(current.live), f"the model changed to {spec.id}")
            current.spec = spec
        g = self._groups.setdefault(group, _Group(spec))
        if count > len(g.live):
            for _ in range(count - len(g.live)):
                self._add(group, g)
        elif count < len(g.live):
            self._retire(g, len(g.live) - count, f"scaled to {count}")
        self.tick()

    def pick(self, group: str) -> Resident:
        """The instance a request of ``group`` runs on: ready with the fewest in flight, else one loading."""
        g = self._groups.get(group)
        if g is None or not g.live:
            raise Unavailable(f"deployment {group} holds no instances", retry_after=5.0, code="no_instances")
        ranked = sorted(g.live, key=lambda i: (_RANK.get(i.resident.state, 2), i.resident.admitted))
        chosen = ranked[0]
        if chosen.resident.state is ModelState.COLD and chosen.resident.error:
            raise Unavailable(f"no instance of deployment {group} is running: {chosen.resident.error}",
                              retry_after=RETRY_FAILED_S, code="deployment_failed")
        return chosen.resident

    def tick(self) -> None:
        """Load instances that are cold (new, crashed, or waiting for memory); unload drained ones."""
        now = time.time()
        for g in self._groups.values():
            for instance in g.live:
                self._load_if_cold(g, instance, now)
            for instance in [i for i in g.retiring if i.resident.admitted == 0]:
                self._stop(g, instance, now)

    def view(self, group: str) -> GroupView | None:
        g = self._groups.get(group)
        if g is None:
            return None
        return GroupView(g.spec.id, tuple(i.view() for i in (*g.live, *g.retiring)),
                         tuple(i.view() for i in g.stopped))

    def logs(self, group: str) -> list[str]:
        g = self._groups.get(group)
        return list(g.log) if g is not None else []

    def _check_fit(self, group: str, spec: ModelSpec, count: int) -> None:
        """Refuse ``count`` instances that could never load beside the other deployments' (this group's own
        current instances are kept or replaced, so they do not count)."""
        g = self._groups.get(group)
        mine = {id(i.resident) for i in g.live} if g is not None else set()
        held = sum(r.footprint for r in self._residents.values() if r.pinned and id(r) not in mine)
        each = self._footprint(spec)
        if held + each * count > self._budget:
            raise InsufficientCapacity(
                f"{count} instances of {spec.id} need about {(each * count) >> 20} MB; the pool's memory budget "
                f"is {self._budget >> 20} MB, of which {held >> 20} MB is held by other dedicated deployments",
                param="instance_count")

    def _add(self, group: str, g: _Group) -> None:
        instance_id = f"{group}#{next(g.serial)}"
        resident = Resident(g.spec, self._footprint(g.spec), adapters=AdapterSlots(), pinned=True)
        resident.log = lambda line: _append(g, instance_id, line)
        self._residents[instance_id] = resident
        g.live.append(_Instance(instance_id, resident))
        _append(g, instance_id, f"instance added ({g.spec.id}, about {resident.footprint >> 20} MB)")

    def _retire(self, g: _Group, how_many: int, reason: str) -> None:
        # Not ready first, then the least busy; among equals the newest (stable sort over the reversed list).
        ranked = sorted(reversed(g.live), key=lambda i: (-_RANK.get(i.resident.state, 2), i.resident.admitted))
        for instance in ranked[:how_many]:
            g.live.remove(instance)
            instance.resident.pinned = False
            g.retiring.append(instance)
            _append(g, instance.id, f"instance retiring: {reason}")

    def _stop(self, g: _Group, instance: _Instance, now: float) -> None:
        g.retiring.remove(instance)
        self._unload(instance.resident, "retired")
        self._residents.pop(instance.id, None)
        instance.ended_at = now
        g.stopped.append(instance)
        _append(g, instance.id, "instance stopped")

    def _load_if_cold(self, g: _Group, instance: _Instance, now: float) -> None:
        resident = instance.resident
        if resident.state is not ModelState.COLD or resident.loading is not None:
            return
        if resident.error and now - instance.failed_at < RETRY_FAILED_S:
            return
        try:
            self._start_load(resident)
        except (ModelOverloaded, Unavailable) as exc:
            if instance.waiting != exc.message:
                instance.waiting = exc.message
                _append(g, instance.id, f"waiting for memory: {exc.message}")
            return
        instance.waiting = None
        instance.failed_at = now  # a load that fails is retried RETRY_FAILED_S after it started


_RANK = {ModelState.READY: 0, ModelState.LOADING: 1}


def _append(g: _Group, instance_id: str, line: str) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    g.log.append(f"{stamp} [{instance_id}] {line.rstrip()}")
