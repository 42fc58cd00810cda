"""The batch runner: claims queued jobs, answers their lines through the online serving path, writes the results.

Each gateway runs one. It leases a job (``batches.service``), checks the input file against the job's endpoint,
then answers every line not answered yet, ``concurrency`` at a time (the engine's batch and a half: lines run
in the background, behind online traffic, and fill the batch when there is none), through ``ServingService`` with the
job's key (so each line is billed like the online request it is, under a request id fixed by the job and the
line: a line generated again after a crash is still one ledger entry). An answer is kept as soon as it exists;
a line refused because the pool is loading or busy is tried again, any other refusal is its answer (the error
file). The lease is renewed every ``RENEW_S``; a cancel or the end of the completion window stops the job
within that time, with the lines already answered in its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from prometheus_client import Counter, Gauge

from batches.service import STATUSES
from endpoints.keys import is_endpoint_key_id
from meterway.errors import (
    AuthenticationFailed,
    InternalFailure,
    InvalidRequest,
    MeterwayError,
    NotFound,
    PaymentRequired,
)
from meterway.processes import pid_alive
from service.auth import Principal
from service.batch_input import REQUESTS, read_batch_lines
from service.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from service.responses import chat_completion, completion, embedding_list
from service.routing import Via

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from batches.service import BatchService, Claimed
    from files.store import FileStore
    from service.batch_input import BatchLine
    from service.serving import ServingService

log = structlog.get_logger("meterway.batch")
LEASE_S, RENEW_S, POLL_S, GAUGE_S = 30.0, 2.0, 1.0, 5.0
SLICE = 32  # lines a job gets before it goes back to the queue, if another waits: jobs (and tenants) take turns
RETRY_S, RETRIES = 1.0, 120  # a line the pool cannot take yet (loading, busy) waits and tries again
# OpenAI's error lines for the lines a stopped job never ran: counted as failed, not billed.
NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
           "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled.")}


class BatchRunner:
    """Works through the batch queue, one job at a time per gateway."""

    def __init__(self, batches: BatchService, files: FileStore, serving: ServingService,
                 principal_of: Callable[[str], Awaitable[Principal]], registry: CollectorRegistry, *,
                 concurrency: int = 24) -> None:
        self._batches, self._files, self._serving = batches, files, serving
        self._concurrency = concurrency
        self._principal_of = principal_of  # a job's key id -> who its lines run as (budgets, no rate limits)
        self._owner = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._task: asyncio.Task[None] | None = None
        self._jobs = Counter("meterway_batch_jobs", "Batch jobs finished, by final status", ["status"],
                             registry=registry)
        self._lines = Counter("meterway_batch_lines", "Batch lines answered: ok (output file) or failed (error file)",
                              ["outcome"], registry=registry)
        self._tokens = Counter("meterway_batch_tokens", "Tokens of answered batch lines (rate(): batch tokens/s)",
                               ["kind"], registry=registry)
        self._running = Gauge("meterway_batch_lines_running", "Batch lines being answered now", registry=registry)
        self._by_status = Gauge("meterway_batch_jobs_in_status", "Batch jobs in each status now (the shared queue)",
                                ["status"], registry=registry)
        self._queued = Gauge("meterway_batch_lines_queued", "Lines still to run in unfinished batch jobs",
                             registry=registry)
        self._gauges: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-runner")
        self._gauges = asyncio.create_task(self._gauge_loop(), name="batch-gauges")

    async def close(self) -> None:
        for task in (self._task, self._gauges):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _gauge_loop(self) -> None:
        """Every ``GAUGE_S``: the queue's jobs by status and its lines still to run."""
        while True:
            try:
                statuses, queued = await self._batches.counts()
            except Exception:  # the database is away: the gauges keep their last values
                log.warning("batch gauges not read", exc_info=True)
            else:
                for status in STATUSES:
                    self._by_status.labels(status).set(statuses.get(status, 0))
                self._queued.set(queued)
            await asyncio.sleep(GAUGE_S)

    async def _run(self) -> None:
        await self._free_dead_leases()
        while True:
            job = None
            try:
                job = await self._batches.claim(self._owner, LEASE_S)
                if job is not None:
                    await self._work(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad job must not stop the queue; its lease runs out and it is retried
                log.exception("batch job failed", batch=job.id if job else None)
            finally:
                if job is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._batches.release(job.id, self._owner))
            if job is None:
                await asyncio.sleep(POLL_S)

    async def _free_dead_leases(self) -> None:
        """Take back at once the jobs of a runner on this machine whose process is gone (a gateway killed and
        restarted), instead of waiting for their leases to run out."""
        host = f"{os.uname().nodename}-"
        for batch_id, owner in await self._batches.leases():
            pid = owner.removeprefix(host).partition("-")[0]
            if owner.startswith(host) and pid.isdigit() and not pid_alive(int(pid)):
                await self._batches.release(batch_id, owner)
                log.info("batch lease of a dead runner freed", batch=batch_id, owner=owner)

    async def _work(self, job: Claimed) -> None:
        status = job.status
        if status == "validating":
            if not await self._validate(job):
                return
            status = "in_progress"
        if status in ("in_progress", "cancelling"):
            try:
                status = await self._answer(job) if status == "in_progress" else "cancelled"
                if status == "more":
                    return  # back to the queue, behind the jobs that waited
            except (NotFound, AuthenticationFailed) as exc:  # input deleted or key revoked mid-job
                await self._fail(job, exc)
                status = "failed"
        if status != "failed":
            await self._finalize(job, "completed" if status in ("in_progress", "finalizing") else status)

    async def _validate(self, job: Claimed) -> bool:
        """Count the input's lines and check each names the job's endpoint; a bad input fails the job."""
        try:
            lines = 0
            for line in read_batch_lines(self._files.data(job.tenant, job.input_file_id)):
                if line.url != job.endpoint:
                    raise InvalidRequest(f"line {line.number}: url {line.url} is not the batch's endpoint "
                                         f"{job.endpoint}", param="url")
                lines += 1
        except (InvalidRequest, NotFound) as exc:
            await self._fail(job, exc)
            return False
        await self._batches.move(job.id, "in_progress", total=lines)
        return True

    async def _fail(self, job: Claimed, exc: MeterwayError) -> None:
        errors = {"object": "list", "data": [{"code": exc.code, "message": exc.message, "param": exc.param}]}
        await self._batches.move(job.id, "failed", errors=errors)

    async def _answer(self, job: Claimed) -> str:
        """Answer the lines not answered yet, ``SLICE`` at a time while another job waits; then ``more`` if
        lines are left, else in_progress, cancelled or expired."""
        principal = await self._principal(job)
        answered = await self._batches.answered(job.id)
        slots, running, stop = asyncio.Semaphore(self._concurrency), set[asyncio.Task[None]](), "in_progress"
        renewed, launched = time.monotonic(), 0
        for line in read_batch_lines(self._files.data(job.tenant, job.input_file_id)):
            if line.number in answered:
                continue
            if launched == SLICE:
                if await self._batches.waiting(job.id):
                    stop = "more"
                    break
                launched = 0  # nothing else queued: no turn to give, the engine stays full
            launched += 1
            await slots.acquire()
            if time.monotonic() - renewed >= RENEW_S:
                stop, renewed = await self._check(job), time.monotonic()
            if stop != "in_progress":
                slots.release()
                break
            task = asyncio.create_task(self._tracked(self._line(job, principal, line)))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _task: slots.release())
        await asyncio.gather(*running, return_exceptions=True)
        if stop != "in_progress" and stop != "more":
            return stop
        checked = await self._check(job)
        return "more" if stop == "more" and checked == "in_progress" else checked

    async def _principal(self, job: Claimed) -> Principal:
        """Who the job's lines run as: the key that created it, or (an endpoint key) the endpoint's owner at
        that endpoint only, as its online calls do."""
        if is_endpoint_key_id(job.key_id):
            return Principal(job.tenant, job.key_id, endpoint=job.endpoint_name)
        return await self._principal_of(job.key_id)

    async def _tracked(self, work: Awaitable[None]) -> None:
        self._running.inc()
        try:
            await work
        finally:
            self._running.dec()

    async def _check(self, job: Claimed) -> str:
        renewed = await self._batches.renew(job.id, self._owner, LEASE_S)
        if renewed is None:
            raise RuntimeError(f"the lease on {job.id} was lost")
        status, expires_at = renewed
        if status == "cancelling":
            return "cancelled"
        return "expired" if time.time() > expires_at else "in_progress"

    async def _line(self, job: Claimed, principal: Principal, line: BatchLine) -> None:
        request_id = f"{job.id}-{line.number}"
        for attempt in range(RETRIES + 1):
            try:
                via = Via(job.endpoint_name, job.deployment, batch=job.id)
                body = await self._serve(principal, job.endpoint, line.body, request_id, via)
                answer, ok = {"status_code": 200, "request_id": request_id, "body": body}, True
                break
            except MeterwayError as exc:
                transient = exc.status in (429, 503) and not isinstance(exc, PaymentRequired)
                if transient and attempt < RETRIES:
                    await asyncio.sleep(max(RETRY_S, exc.retry_after or 0.0))
                    continue
                answer, ok = {"status_code": exc.status, "request_id": request_id, "body": exc.body()}, False
                break
            except Exception as exc:  # every line gets an answer, even one the service fails on
                log.exception("batch line failed", batch=job.id, line=line.number)
                failure = InternalFailure(f"the line could not be answered: {type(exc).__name__}")
                answer, ok = {"status_code": 500, "request_id": request_id, "body": failure.body()}, False
                break
        self._counted(ok, answer)
        result = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line.custom_id, "response": answer,
                  "error": None}
        await self._batches.record(job.id, line.number, ok, json.dumps(result, separators=(",", ":")))

    def _counted(self, ok: bool, answer: dict[str, Any]) -> None:
        self._lines.labels("ok" if ok else "failed").inc()
        usage = answer["body"].get("usage") if ok else None
        if usage:
            self._tokens.labels("prompt").inc(usage.get("prompt_tokens") or 0)
            self._tokens.labels("completion").inc(usage.get("completion_tokens") or 0)

    async def _serve(self, principal: Principal, url: str, body: dict[str, Any], request_id: str,
                     via: Via) -> Any:
        try:
            request = msgspec.convert(body, REQUESTS[url])
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"body: {exc}", param="body") from None
        serving = self._serving
        if isinstance(request, EmbeddingRequest):
            plan, vectors, _headers = await serving.embeddings(principal, request, request_id, via)
            return msgspec.to_builtins(embedding_list(plan, vectors, request.encoding_format))
        if isinstance(request, ChatCompletionRequest):
            generation = await serving.chat(principal, request, request_id, via)
            return msgspec.to_builtins(chat_completion(request_id, generation, await generation.collect()))
        assert isinstance(request, CompletionRequest)
        generation = await serving.completion(principal, request, request_id, via)
        return msgspec.to_builtins(completion(request_id, generation, await generation.collect()))

    async def _not_run(self, job: Claimed, code: str, message: str) -> None:
        """Give every line not answered an error line (``code``), so the files hold every line once."""
        answered = await self._batches.answered(job.id)
        for line in read_batch_lines(self._files.data(job.tenant, job.input_file_id)):
            if line.number not in answered:
                result = {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": line.custom_id, "response": None,
                          "error": {"code": code, "message": message}}
                await self._batches.record(job.id, line.number, False, json.dumps(result, separators=(",", ":")))

    async def _finalize(self, job: Claimed, status: str) -> None:
        """Write the output and error files from the answered lines; the job ends ``status``."""
        if status in NOT_RUN:
            await self._not_run(job, *NOT_RUN[status])
        await self._batches.move(job.id, "finalizing")
        files: dict[str, str | None] = {}
        for ok, field, suffix in ((True, "output_file_id", "output"), (False, "error_file_id", "error")):
            lines = [f"{result}\n".encode() async for result in self._batches.results(job.id, ok)]
            name = f"{job.id}_{suffix}.jsonl"
            files[field] = self._files.write(job.tenant, name, "batch_output", lines).id if lines else None
        await self._batches.move(job.id, status, **files)
        self._jobs.labels(status).inc()
        log.info("batch finished", batch=job.id, status=status)

