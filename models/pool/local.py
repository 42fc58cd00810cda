"""``LocalPool``: the models of one machine, each in its own worker process, loaded on demand.

Policies, all enforced on the event loop without locks (every decision below is taken between two awaits):
- single-flight loading: the first request for a cold model starts its load; later ones wait on that same
  load, at most ``load_wait_s``, then get ``ModelLoading`` (503 + Retry-After) while the load goes on;
- memory budget: a model's footprint is estimated from its weights; when it does not fit, the least
  recently used models with nothing in flight are unloaded first; if that is not enough, ``ModelOverloaded``;
- bounded queues: ``queue_limit`` requests running or waiting per model, then ``ModelOverloaded`` at once;
- scale to zero: a supervisor unloads models idle for ``idle_ttl_s`` and samples worker memory and stats;
- crash: a worker that dies ends its streams with an ``error`` delta and leaves its model cold.
A LoRA fine-tune runs on its base model's worker: the pool attaches the adapter once per worker lifetime.
Dedicated deployments hold instances of their own beside the shared models (``models.pool.dedicated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from meterway.errors import InternalFailure, ModelLoading, ModelNotFound, ModelOverloaded, Unavailable, WorkerCrashed
from models.pool.adapters import DEFAULT_MAX_ADAPTERS, AdapterSlots
from models.pool.api import EmbeddingJob, GenerationJob, ModelState
from models.pool.dedicated import GroupView, InstanceGroups
from models.pool.hosts import HostContext, ModelHost, host_kind
from models.pool.metrics import PoolMetrics
from models.pool.residency import Resident, choose_victims, reserved_bytes
from models.pool.standby import DEFAULT_LOADER, StandbyWorker
from models.pool.stream import GenerationStream
from models.runtime.api import EmbeddingResult, GenerationRequest, TokenDelta

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from meterway.settings import PoolSettings
    from models.catalog import ModelSpec

# The next standby starts once the pool is quiet (nothing running or waiting) at least this long after a load,
# or at the latest after the longer wait when it never gets quiet.
STANDBY_REFILL_DELAY_S, STANDBY_REFILL_MAX_WAIT_S = 2.0, 10.0

log = structlog.get_logger("meterway.pool")


class LocalPool:
    """``models.pool.api.ModelPool`` over worker processes on this machine."""

    def __init__(self, settings: PoolSettings, store_dir: Path, catalog: list[ModelSpec], *,
                 registry: CollectorRegistry | None = None, worker_loader: str = DEFAULT_LOADER) -> None:
        self.settings = settings
        self.store_dir = store_dir
        self.metrics = PoolMetrics(registry)
        self._specs = {spec.id: spec for spec in catalog}
        self._residents: dict[str, Resident] = {}
        self.standby = StandbyWorker(worker_loader, enabled=settings.standby)
        self._context = HostContext(store_dir, settings, self.standby.take, self._host_exited)
        self.groups = InstanceGroups(self._residents, settings.memory_budget_mb << 20, self._footprint,
                                     self._start_load, self._unload)
        self.instance_types = ("gpu",) if settings.device.startswith("cuda") else ("cpu",)
        self._background: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._standby_due: float | None = None  # when a load took the standby (``_refill_standby_when_quiet``)
        self._closing = False

    async def start(self) -> None:
        """Start the supervisor (idle unload, memory and stats sampling)."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="pool-supervisor")
            self.standby.fill()

    async def close(self) -> None:
        """Stop the supervisor, abandon loads and stop every worker."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._sampling is not None:
            self._sampling.cancel()
        loads = [r.loading for r in self._residents.values() if r.loading is not None]
        closing = [self._unload(resident, "closed") for resident in self._residents.values()]
        await asyncio.gather(*loads, *closing, *self._background, self.standby.close(),
                             return_exceptions=True)

    def generate(self, job: GenerationJob) -> GenerationStream:
        """Stream ``job``'s deltas; admission (and its errors) happens at ``start()`` or the first delta."""
        return GenerationStream(job, self._open)

    async def embed(self, job: EmbeddingJob) -> EmbeddingResult:
        """Embed ``job``'s inputs on its model's worker."""
        resident = await self._acquire(job.model, job.group, job.background)
        try:
            host = self._host_of(resident)
            return await host.embed(job.request_id, [list(ids) for ids in job.inputs])
        finally:
            self._release(resident, background=job.background)

    def state(self, model_id: str) -> ModelState:
        """cold / loading / ready (a fine-tune reports its base's worker)."""
        spec = self._specs.get(model_id)
        host_id = spec.base if spec is not None and spec.base and spec.adapter_path else model_id
        resident = self._residents.get(host_id)
        return resident.state if resident else ModelState.COLD

    def metrics_text(self) -> str:
        return self.metrics.text()

    def provision(self, group: str, spec: ModelSpec, instances: int) -> None:
        """Hold ``instances`` dedicated workers of ``spec`` for ``group``; ``InsufficientCapacity`` if they
        could never fit beside the other dedicated ones (nothing changes then)."""
        self._specs.setdefault(spec.id, spec)
        self.groups.provision(group, self._host_spec(spec), instances)

    def instances(self, group: str) -> GroupView | None:
        """A dedicated group's instances now, and those that stopped lately."""
        return self.groups.view(group)

    def instance_logs(self, group: str) -> list[str]:
        """The recent log lines of a dedicated group's workers, oldest first."""
        return self.groups.logs(group)

    def worker_pid(self, model_id: str) -> int | None:
        """The process serving ``model_id`` now, if any (for operators and tests)."""
        resident = self._residents.get(model_id)
        return resident.host.pid if resident and resident.host else None

    # -- admission -------------------------------------------------------------------------------------

    async def _open(self, stream: GenerationStream) -> Callable[[], None]:
        job = stream.job
        resident = await self._acquire(job.model, job.group, job.background)
        adapter: str | None = None
        try:
            adapter = await self._use_adapter(resident, job.model)
            host = self._host_of(resident)
        except BaseException:
            self._release(resident, adapter, job.background)
            raise
        submitted = time.monotonic()
        # From here the stream's final delta releases the slot, whatever happens (even a refused submit).
        stream.when_final(lambda final: self._finished(resident, adapter, job, final))
        host.submit(GenerationRequest(job.request_id, job.prompt_ids, job.params, adapter, job.background),
                    self.metrics.timed_sink(stream.push, resident.spec.id, submitted, job.model.id))
        return lambda: host.cancel(job.request_id)

    async def _acquire(self, spec: ModelSpec, group: str | None = None, background: bool = False) -> Resident:
        """Admit one request to ``spec``'s model (on ``group``'s instances if it names a dedicated deployment)
        and wait until it is ready; the caller must release. ``queue_limit`` bounds online requests only: batch
        lines (``background``) are bounded by the batch runner, and never crowd online callers out."""
        self._specs.setdefault(spec.id, spec)
        resident = self.groups.pick(group) if group else self._resident(self._host_spec(spec))
        online = resident.admitted - resident.background
        if not background and online >= self.settings.queue_limit:
            self.metrics.rejections.labels(resident.label, "overloaded").inc()
            raise ModelOverloaded(f"{spec.id} has {online} requests running or queued; retry shortly",
                                  retry_after=1.0)
        resident.admitted += 1
        resident.background += background
        self.metrics.queue_depth.labels(resident.label).set(resident.admitted)
        try:
            await self._ready(resident)
        except BaseException:
            self._release(resident, background=background)
            raise
        return resident

    def _release(self, resident: Resident, adapter: str | None = None, background: bool = False) -> None:
        resident.admitted -= 1
        resident.background -= background
        resident.last_used = time.monotonic()
        if adapter is not None:
            resident.adapters.release(adapter)
        self.metrics.queue_depth.labels(resident.label).set(resident.admitted)

    def _finished(self, resident: Resident, adapter: str | None, job: GenerationJob, final: TokenDelta) -> None:
        self._release(resident, adapter, job.background)
        self.metrics.finished(resident.label, job.model.id, final)

    async def _ready(self, resident: Resident) -> None:
        """Wait (bounded) until ``resident`` is loaded, starting its load if it is cold."""
        if resident.state is ModelState.READY:
            return
        if resident.loading is None:
            self._start_load(resident)
        loading = resident.loading
        assert loading is not None
        try:
            await asyncio.wait_for(asyncio.shield(loading), self.settings.load_wait_s)
        except asyncio.CancelledError:
            if loading.cancelled() and not _current_task_cancelling():
                raise Unavailable(f"{resident.spec.id} was unloaded while loading (the pool is closing)",
                                  retry_after=1.0) from None
            raise
        except TimeoutError:
            self.metrics.rejections.labels(resident.label, "loading").inc()
            raise ModelLoading(f"{resident.spec.id} is loading; retry shortly",
                               retry_after=max(1.0, round(resident.last_load_s))) from None
        if resident.state is not ModelState.READY:
            raise WorkerCrashed(f"the worker serving {resident.spec.id} stopped right after loading")

    def _resident(self, spec: ModelSpec) -> Resident:
        resident = self._residents.get(spec.id)
        if resident is None:
            slots = AdapterSlots(int(spec.extra.get("max_adapters", DEFAULT_MAX_ADAPTERS)))
            resident = self._residents[spec.id] = Resident(spec, self._footprint(spec), adapters=slots)
        return resident

    def _footprint(self, spec: ModelSpec) -> int:
        return host_kind(spec).footprint_bytes(spec, self.store_dir)

    def _host_spec(self, spec: ModelSpec) -> ModelSpec:
        """The spec whose worker serves ``spec``: itself, or the base of a LoRA fine-tune."""
        if spec.base is None or spec.adapter_path is None:
            return spec
        base = self._specs.get(spec.base)
        if base is None:
            raise ModelNotFound(spec.base)
        return base

    def _host_of(self, resident: Resident) -> ModelHost:
        if resident.host is None:
            raise WorkerCrashed(f"the worker serving {resident.spec.id} stopped")
        return resident.host

    async def _use_adapter(self, resident: Resident, spec: ModelSpec) -> str | None:
        """For a LoRA fine-tune: its adapter, attached to the base's worker; the name the engine knows."""
        if spec.base is None or spec.adapter_path is None:
            return None
        path = Path(spec.adapter_path)
        path = path if path.is_absolute() else self.store_dir / path
        use = await resident.adapters.use(self._host_of(resident), spec.id, str(path.resolve()))
        if use.hit:
            self.metrics.adapter_hits.labels(resident.label).inc()
        else:
            self.metrics.adapter_loads.labels(resident.label).inc()
            self.metrics.adapter_seconds.labels(resident.label).observe(use.seconds)
            log.info("adapter attached", adapter=spec.id, base=resident.spec.id, seconds=use.seconds)
        return spec.id

    # -- loading and memory ----------------------------------------------------------------------------

    def _start_load(self, resident: Resident) -> None:
        """Reserve memory (evicting idle models) and start the one load every waiter shares."""
        victims = self._victims_for(resident)
        closing = [self._unload(victim, "evicted") for victim in victims]
        resident.state = ModelState.LOADING
        self._update_reserved()
        task = asyncio.create_task(self._load(resident, closing), name=f"load-{resident.spec.id}")
        resident.loading = task
        # Waiters that timed out no longer read the outcome; retrieve it so asyncio does not complain.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _victims_for(self, resident: Resident) -> list[Resident]:
        try:
            return choose_victims(resident, self._residents.values(), self.settings.memory_budget_mb << 20)
        except ModelOverloaded:
            self.metrics.rejections.labels(resident.label, "memory").inc()
            raise

    async def _load(self, resident: Resident, closing: list[asyncio.Future[None]]) -> None:
        await asyncio.gather(*closing, return_exceptions=True)  # evicted workers exit before we grow
        started = time.monotonic()
        context = self._context if resident.log is None else replace(self._context, on_log=resident.log)
        host = host_kind(resident.spec).create(resident.spec, context)
        try:
            await host.load()
        except BaseException as exc:
            self._refill_standby()
            self.metrics.load_failures.labels(resident.label).inc()
            resident.state, resident.loading, resident.error = ModelState.COLD, None, str(exc) or type(exc).__name__
            _tell(resident, f"load failed: {resident.error}")
            self._update_reserved()
            await asyncio.shield(host.close())
            log.error("model load failed", model=resident.spec.id, error=str(exc))
            if isinstance(exc, Exception) and not isinstance(exc, InternalFailure):
                raise InternalFailure(f"loading {resident.spec.id} failed: {exc}",
                                      code="model_load_failed") from exc
            raise
        self._standby_due = time.monotonic()
        seconds = time.monotonic() - started
        resident.host, resident.state, resident.loading, resident.error = host, ModelState.READY, None, None
        _tell(resident, f"model ready in {seconds:.2f} s (pid {host.pid})")
        resident.last_used, resident.last_load_s = time.monotonic(), seconds
        self.metrics.loads.labels(resident.label).inc()
        self.metrics.cold_start.labels(resident.label).observe(seconds)
        self.metrics.worker_rss.labels(resident.label).set(host.rss_bytes())
        log.info("model ready", model=resident.spec.id, seconds=round(seconds, 3), pid=host.pid)

    def _refill_standby(self) -> None:
        # After a load, not during it: the next standby's imports would slow this cold start down.
        if not self._closing:
            self.standby.fill()

    def _refill_standby_when_quiet(self) -> None:
        """Start the next standby once no request is running or waiting: its imports are seconds of CPU
        that would otherwise slow the streams of the model just loaded (the cold request's own ran at half
        speed on two cores). A pool that never gets quiet gets it after ``STANDBY_REFILL_MAX_WAIT_S``."""
        if self._standby_due is None:
            return
        waited = time.monotonic() - self._standby_due
        quiet = all(resident.admitted == 0 for resident in self._residents.values())
        if waited >= STANDBY_REFILL_DELAY_S and (quiet or waited >= STANDBY_REFILL_MAX_WAIT_S):
            self._standby_due = None
            self._refill_standby()

    def _unload(self, resident: Resident, reason: str) -> asyncio.Future[None]:
        """Detach ``resident``'s host now (the model is cold at once) and stop it in the background."""
        host, resident.host = resident.host, None
        if resident.loading is not None:
            resident.loading.cancel()
        resident.state, resident.loading = ModelState.COLD, None
        resident.adapters.clear()
        self._update_reserved()
        rss = self.metrics.value("meterway_pool_worker_rss_bytes", model=resident.spec.id)
        self.metrics.worker_rss.labels(resident.label).set(0)
        if host is None:
            return _completed()
        counters = {"evicted": self.metrics.evictions, "idle": self.metrics.idle_unloads}
        if reason in counters:
            counters[reason].labels(resident.label).inc()
        log.info("model unloaded", model=resident.spec.id, reason=reason, rss_bytes=int(rss), pid=host.pid)
        task = asyncio.create_task(host.close(), name=f"unload-{resident.spec.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _host_exited(self, host: ModelHost) -> None:
        """A worker ended; if it was still serving (not unloaded by us), it crashed: the model goes cold."""
        for resident in self._residents.values():
            if resident.host is host:
                log.error("worker crashed", model=resident.spec.id, pid=host.pid)
                _tell(resident, f"worker crashed (pid {host.pid})")
                self.metrics.worker_crashes.labels(resident.label).inc()
                resident.host, resident.state = None, ModelState.COLD
                resident.adapters.clear()
                self.metrics.worker_rss.labels(resident.label).set(0)
                self._update_reserved()

    def _update_reserved(self) -> None:
        self.metrics.reserved.set(reserved_bytes(self._residents.values()))

    # -- supervision -----------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Every tick: unload idle models; sample worker memory and engine stats unless a sample still runs.

        Sampling asks every worker for its stats: a worker that does not answer within the call timeout is
        hung and gets stopped, which ends its streams with an error instead of leaving callers waiting.
        """
        interval = max(0.05, min(1.0, self.settings.idle_ttl_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                self._unload_idle()
                self.groups.tick()
                self._refill_standby_when_quiet()
            except Exception:  # a bad tick must not end supervision for the life of the pool
                log.exception("pool supervision tick failed")
            if self._sampling is None or self._sampling.done():
                self._sampling = asyncio.create_task(self._sample(), name="pool-sample")

    def _unload_idle(self) -> None:
        now = time.monotonic()
        for resident in list(self._residents.values()):
            if resident.idle and now - resident.last_used >= self.settings.idle_ttl_s:
                self._unload(resident, "idle")

    async def _sample(self) -> None:
        ready = [(r, r.host) for r in self._residents.values() if r.host is not None and r.state is ModelState.READY]
        await asyncio.gather(*(self.metrics.sample(r.label, r.spec.id, r.admitted, host) for r, host in ready))


def _tell(resident: Resident, line: str) -> None:
    """A pool event about a dedicated instance, into its deployment's log."""
    if resident.log is not None:
        resident.log(line)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _completed() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
