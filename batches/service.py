"""Batch jobs in the database: OpenAI's Batch objects, the lease a runner holds on one, and its answered lines.

Statuses follow OpenAI's: ``validating`` → ``in_progress`` → ``finalizing`` → ``completed``; ``failed``
(the input did not validate); ``cancelling`` → ``cancelled``; ``expired`` past the completion window. A
runner claims a job with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas share the queue; the
single write lock on SQLite) and renews it while it works; a lease that runs out (the runner died) lets another
runner, or the same one after a restart, take the job over. Answered lines are rows keyed by line number, so
nothing answered is lost or answered twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from batches.tables import MOMENTS, BatchLineRow, BatchRow
from meterway.errors import Conflict, NotFound, RateLimited

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

WINDOWS = {"24h": 24 * 3600}
STATUSES = ("validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")  # a runner has work to do
CANCELLABLE = ("validating", "in_progress")


@dataclass(frozen=True)
class NewBatch:
    tenant: str
    key_id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    lines: int  # requests in the input file (validated at upload)
    endpoint_name: str | None = None  # created at a batch endpoint: it runs on that endpoint's ...
    deployment: str | None = None  # ... default deployment at creation (None: the serverless API)


@dataclass(frozen=True)
class Claimed:
    """What a runner needs of the job it holds."""

    id: str
    tenant: str
    key_id: str
    endpoint: str
    input_file_id: str
    status: str
    expires_at: int
    endpoint_name: str | None = None
    deployment: str | None = None


class BatchService:
    """Batch jobs and their lines."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, queued_lines: int = 0) -> None:
        self._sessions = sessions
        self._queued_lines = queued_lines  # per tenant, over its unfinished jobs (0: no limit)

    async def create(self, new: NewBatch) -> dict[str, Any]:
        now = int(time.time())
        row = BatchRow(id=f"batch_{uuid.uuid4().hex[:24]}", tenant=new.tenant, key_id=new.key_id,
                       endpoint=new.endpoint, input_file_id=new.input_file_id, completion_window=new.completion_window,
                       meta=new.metadata, status="validating", total=new.lines, completed=0, failed=0,
                       created_at=now, expires_at=now + WINDOWS[new.completion_window],
                       endpoint_name=new.endpoint_name, deployment=new.deployment)
        async with self._sessions() as session, session.begin():
            queued = await self._queued(session, new.tenant)
            if self._queued_lines and queued + new.lines > self._queued_lines:
                raise RateLimited(f"Enqueued line limit reached: {queued} lines of your batches are still to run "
                                  f"and this one adds {new.lines}; the limit is {self._queued_lines}. Wait for a "
                                  "batch to finish, or split the file.", param="input_file_id",
                                  code="batch_line_limit_exceeded")
            session.add(row)
        return batch_body(row)

    async def counts(self) -> tuple[dict[str, int], int]:
        """Jobs by status, and the lines still to run over every unfinished job (for ``/metrics``)."""
        async with self._sessions() as session:
            rows = await session.execute(select(BatchRow.status, func.count()).group_by(BatchRow.status))
            statuses = {str(status): int(count) for status, count in rows.all()}
            return statuses, await self._queued(session, None)

    @staticmethod
    async def _queued(session: AsyncSession, tenant: str | None) -> int:
        """Lines not answered yet in the unfinished jobs (of ``tenant``, or of all)."""
        query = select(func.coalesce(func.sum(BatchRow.total - BatchRow.completed - BatchRow.failed), 0)) \
            .where(BatchRow.status.in_(ACTIVE))
        if tenant is not None:
            query = query.where(BatchRow.tenant == tenant)
        return int((await session.execute(query)).scalar_one())

    async def get(self, tenant: str, batch_id: str, endpoint: str | None = None) -> dict[str, Any]:
        async with self._sessions() as session:
            return batch_body(await self._owned(session, tenant, batch_id, endpoint))

    async def page(self, tenant: str, after: str | None, limit: int,
                   endpoint: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """The tenant's batches (of one batch endpoint, if named), newest first, after the cursor ``after``; and
        whether more follow."""
        async with self._sessions() as session:
            query = select(BatchRow).where(BatchRow.tenant == tenant)
            if endpoint is not None:
                query = query.where(BatchRow.endpoint_name == endpoint)
            if after is not None:
                cursor = await self._owned(session, tenant, after, endpoint)
                query = query.where((BatchRow.created_at < cursor.created_at)
                                    | ((BatchRow.created_at == cursor.created_at) & (BatchRow.id < cursor.id)))
            rows = (await session.execute(query.order_by(BatchRow.created_at.desc(), BatchRow.id.desc())
                                          .limit(limit + 1))).scalars().all()
        return [batch_body(row) for row in rows[:limit]], len(rows) > limit

    async def cancel(self, tenant: str, batch_id: str, endpoint: str | None = None) -> dict[str, Any]:
        """Ask the runner to stop: answered lines stay in the output; a finished batch is a 409."""
        async with self._sessions() as session, session.begin():
            row = await self._owned(session, tenant, batch_id, endpoint, lock=True)
            if row.status not in (*CANCELLABLE, "cancelling"):
                raise Conflict(f"Cannot cancel a batch with status {row.status}.", param="batch_id")
            if row.status != "cancelling":
                row.status, row.cancelling_at = "cancelling", int(time.time())
            return batch_body(row)

    async def claim(self, owner: str, lease_s: float) -> Claimed | None:
        """The job with work to do whose lease is free (or ran out) that waited longest — never worked on
        first, then the one given back longest ago, so jobs take turns — now leased to ``owner``."""
        now = time.time()
        async with self._sessions() as session, session.begin():
            query = (select(BatchRow).where(BatchRow.status.in_(ACTIVE))
                     .where((BatchRow.lease_until.is_(None)) | (BatchRow.lease_until < now))
                     .order_by(BatchRow.worked_at.asc().nulls_first(), BatchRow.created_at, BatchRow.id)
                     .limit(1).with_for_update(skip_locked=True))
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None:
                return None
            row.lease_owner, row.lease_until = owner, now + lease_s
            return Claimed(row.id, row.tenant, row.key_id, row.endpoint, row.input_file_id, row.status,
                           row.expires_at, row.endpoint_name, row.deployment)

    async def waiting(self, batch_id: str) -> bool:
        """Whether a job other than ``batch_id`` has work and no runner: the one holding ``batch_id`` should
        give it a turn."""
        now = time.time()
        async with self._sessions() as session:
            query = (select(BatchRow.id).where(BatchRow.status.in_(ACTIVE), BatchRow.id != batch_id)
                     .where((BatchRow.lease_until.is_(None)) | (BatchRow.lease_until < now)).limit(1))
            return (await session.execute(query)).scalar_one_or_none() is not None

    async def renew(self, batch_id: str, owner: str, lease_s: float) -> tuple[str, int] | None:
        """Extend the lease; the job's status and the end of its window now (the runner stops on
        ``cancelling`` or past the window), None if the lease was lost."""
        async with self._sessions() as session, session.begin():
            mine = update(BatchRow).where(BatchRow.id == batch_id, BatchRow.lease_owner == owner)
            result = await session.execute(mine.values(lease_until=time.time() + lease_s)
                                           .returning(BatchRow.status, BatchRow.expires_at))
            row = result.one_or_none()
            return (str(row[0]), int(row[1])) if row is not None else None

    async def leases(self) -> list[tuple[str, str]]:
        """(job, lease owner) of every job a runner holds now."""
        async with self._sessions() as session:
            query = select(BatchRow.id, BatchRow.lease_owner).where(BatchRow.lease_owner.is_not(None))
            return [(batch_id, str(owner)) for batch_id, owner in (await session.execute(query)).all()]

    async def release(self, batch_id: str, owner: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(update(BatchRow).where(BatchRow.id == batch_id, BatchRow.lease_owner == owner)
                                  .values(lease_owner=None, lease_until=None, worked_at=time.time()))

    async def move(self, batch_id: str, status: str, **fields: Any) -> None:
        """Set the job's status (stamping its moment, as OpenAI's fields do) and other fields."""
        moment = f"{status}_at"
        stamp = {moment: int(time.time())} if moment in MOMENTS else {}
        async with self._sessions() as session, session.begin():
            await session.execute(update(BatchRow).where(BatchRow.id == batch_id)
                                  .values(status=status, **stamp, **fields))

    async def answered(self, batch_id: str) -> set[int]:
        async with self._sessions() as session:
            query = select(BatchLineRow.number).where(BatchLineRow.batch_id == batch_id)
            return set((await session.execute(query)).scalars())

    async def record(self, batch_id: str, number: int, ok: bool, result: str) -> None:
        """Keep one line's answer; a second answer of the same line is dropped, and counted once."""
        async with self._sessions() as session, session.begin():
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            statement = (insert(BatchLineRow).values(batch_id=batch_id, number=number, ok=ok, result=result)
                         .on_conflict_do_nothing().returning(BatchLineRow.number))
            if (await session.execute(statement)).scalar_one_or_none() is None:
                return
            counter = BatchRow.completed if ok else BatchRow.failed
            await session.execute(update(BatchRow).where(BatchRow.id == batch_id).values({counter: counter + 1}))

    async def results(self, batch_id: str, ok: bool) -> AsyncIterator[str]:
        """The answered lines of one file (output or errors), in input order."""
        async with self._sessions() as session:
            query = (select(BatchLineRow.result).where(BatchLineRow.batch_id == batch_id, BatchLineRow.ok.is_(ok))
                     .order_by(BatchLineRow.number))
            for result in (await session.execute(query)).scalars():
                yield result

    async def _owned(self, session: AsyncSession, tenant: str, batch_id: str, endpoint: str | None = None, *,
                     lock: bool = False) -> BatchRow:
        """The tenant's batch (created at batch endpoint ``endpoint``, if named), else ``NotFound``."""
        query = select(BatchRow).where(BatchRow.id == batch_id)
        row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
        if row is None or row.tenant != tenant or endpoint not in (None, row.endpoint_name):
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return row


def batch_body(row: BatchRow) -> dict[str, Any]:
    """OpenAI's Batch object, and the batch endpoint and deployment it runs on (None at ``/v1/batches``)."""
    moments = {name: getattr(row, name) for name in MOMENTS}
    return {"id": row.id, "object": "batch", "endpoint": row.endpoint, "errors": row.errors,
            "input_file_id": row.input_file_id, "completion_window": row.completion_window, "status": row.status,
            "output_file_id": row.output_file_id, "error_file_id": row.error_file_id, "created_at": row.created_at,
            "expires_at": row.expires_at, **moments,
            "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
            "metadata": row.meta, "endpoint_name": row.endpoint_name, "deployment": row.deployment}
