"""Worker processes started ahead of need, so that a cold start pays for loading weights and nothing else.

Starting a worker costs an interpreter plus the runtime's imports (torch, transformers): seconds of CPU
before the first weight is read. A standby worker has done that already and waits for its ``Load`` frame;
the pool takes it for the next cold start and starts the next standby once that load has finished (not
during it: on a small machine the two would compete for the same cores). A standby holds no model, so it
is outside the memory budget; scale to zero still unloads every model.

``meterway serve`` starts the first standby before the gateway imports its own code (``start_early``), and the
pool's first ``fill`` adopts it: the worker's imports run beside the gateway's start, so that a gateway that
restarts (after a crash, with batch jobs to resume) is ready to load a model seconds sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import structlog

log = structlog.get_logger("meterway.pool")
REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_SPINCOUNT = "100000"
DEFAULT_LOADER = "models.runtime:load"
# The worker ``start_early`` started, with its loader, until a pool's first ``fill`` adopts it.
_early: tuple[str, asyncio.subprocess.Process] | None = None


async def start_early(loader: str = DEFAULT_LOADER) -> None:
    """Start the first standby now, on the loop that will run the gateway (see the module's doc)."""
    global _early
    _early = (loader, await spawn_worker(loader))


def _adopt(loader: str) -> asyncio.subprocess.Process | None:
    """The early worker, if it runs ``loader`` and is still alive (taken once)."""
    global _early
    found, _early = _early, None
    if found is None:
        return None
    started_for, process = found
    if started_for == loader and process.returncode is None:
        return process
    if process.stdin is not None:
        process.stdin.close()  # not this pool's: it exits when its stdin closes
    return None


async def _ready(process: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    return process


async def spawn_worker(loader: str) -> asyncio.subprocess.Process:
    """Start ``python -m models.pool.worker``: frames on stdin/stdout, logs on stderr (its host reads them)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # How long torch's idle OpenMP threads spin before sleeping. Sleeping at once (OMP_WAIT_POLICY=PASSIVE)
    # puts a futex wake-up between every two of the ~600 operators of a decode step: 1.6-2x slower decoding
    # on a quiet machine. Spinning forever steals the cores from the gateway and other workers when the
    # machine is shared (3-4x slower there). A bounded spin (about 2 ms on the EPYC here) covers the gaps
    # inside a step and sleeps between requests (docs/performance.md, "OpenMP wait policy"). libgomp reads
    # it once when torch is imported, so it must be in the child's environment; an operator's setting wins.
    if "OMP_WAIT_POLICY" not in env:
        env.setdefault("GOMP_SPINCOUNT", WORKER_SPINCOUNT)
    # A session of its own: a Ctrl-C meant for the gateway must not kill workers mid-frame; they exit when
    # their stdin closes instead.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "models.pool.worker", "--loader", loader,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        start_new_session=True)


class StandbyWorker:
    """At most one pre-started worker; ``take`` hands it out (or starts one when there is none)."""

    def __init__(self, loader: str, *, enabled: bool) -> None:
        self._loader = loader
        self._enabled = enabled
        self._next: asyncio.Task[asyncio.subprocess.Process] | None = None

    def fill(self) -> None:
        """Start the standby now if there is none (no-op when disabled)."""
        if self._enabled and self._next is None:
            early = _adopt(self._loader)
            starting = _ready(early) if early is not None else spawn_worker(self._loader)
            self._next = asyncio.create_task(starting, name="standby-worker")

    @property
    def started(self) -> bool:
        """Whether a standby is starting or waiting (``take`` has not handed it out)."""
        return self._next is not None

    @property
    def pid(self) -> int | None:
        """The standby's process id once it is started (for operators and tests)."""
        task = self._next
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result().pid

    async def take(self) -> asyncio.subprocess.Process:
        """A worker waiting for its ``Load``: the standby if it is alive, else a fresh one."""
        task, self._next = self._next, None
        if task is not None:
            with contextlib.suppress(Exception):
                process = await task
                if process.returncode is None:
                    return process
        return await spawn_worker(self._loader)

    async def close(self) -> None:
        """Stop the standby: closing its stdin makes it exit."""
        task, self._next = self._next, None
        if task is None:
            return
        try:
            process = await task
        except Exception:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
