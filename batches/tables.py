"""ORM tables of batch jobs and their answered lines (migration 0011).

A line's answer is a row keyed by (batch, line number): inserting it twice is one row, so a job resumed after a
crash never answers (or counts) a line twice, and what is answered survives the crash.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base

# OpenAI's Batch timestamps, unix seconds; None until the job gets there.
MOMENTS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
           "cancelled_at")


class BatchRow(Base):
    """One batch job: OpenAI's Batch object, plus the lease of the runner working on it."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(80))  # whose key (or "token:<tenant>") created it: its lines bill there
    endpoint: Mapped[str] = mapped_column(String(32))  # the url of every line
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(8))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    errors: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # why validation failed
    created_at: Mapped[int] = mapped_column(Integer, index=True)
    expires_at: Mapped[int] = mapped_column(Integer)
    in_progress_at: Mapped[int | None] = mapped_column(Integer)
    finalizing_at: Mapped[int | None] = mapped_column(Integer)
    completed_at: Mapped[int | None] = mapped_column(Integer)
    failed_at: Mapped[int | None] = mapped_column(Integer)
    expired_at: Mapped[int | None] = mapped_column(Integer)
    cancelling_at: Mapped[int | None] = mapped_column(Integer)
    cancelled_at: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[float | None] = mapped_column(Float)  # unix seconds: past it, another runner may take over
    worked_at: Mapped[float | None] = mapped_column(Float)  # when a runner last gave it back: the queue's order
    # A batch endpoint's job (0013): the endpoint and the deployment it runs on (None: the serverless API).
    endpoint_name: Mapped[str | None] = mapped_column(String(32), index=True)
    deployment: Mapped[str | None] = mapped_column(String(32))


class BatchLineRow(Base):
    """One answered line of a batch: its output (or error) line, exactly once."""

    __tablename__ = "batch_lines"

    batch_id: Mapped[str] = mapped_column(String(40), ForeignKey("batches.id", ondelete="CASCADE"),
                                          primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based line of the input file
    ok: Mapped[bool] = mapped_column(Boolean)  # True: the output file; False: the error file
    result: Mapped[str] = mapped_column(Text)  # the JSONL line, as written to the output or error file
