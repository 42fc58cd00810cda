"""ORM tables of the billing package: the outbox, the ledger, the price books, statements, Stripe exports.

Migration ``0002_billing`` creates the same tables (``0008``, ``0009`` and ``0012`` add to them, ``0016`` adds the
rollup); keep them in step.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, Text, UniqueConstraint, case, func
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base, BigId, ExactDecimal


class OutboxRow(Base):
    """One usage event waiting for the ledger consumer (the local bus)."""

    __tablename__ = "usage_outbox"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerEntryRow(Base):
    """One billed request or instance-minute event (kind 'usage'), or a late one landed in a later period
    (kind 'adjustment')."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(80))  # an API key id, or "deployment:<endpoint>/<deployment>"
    model: Mapped[str] = mapped_column(String(128))
    base_model: Mapped[str | None] = mapped_column(String(128))
    end_user: Mapped[str | None] = mapped_column(String(256))  # the request's ``user``
    subject: Mapped[str | None] = mapped_column(String(256))  # a token caller's subject (migration 0014)
    endpoint: Mapped[str] = mapped_column(String(64))  # the route ("chat.completions", ...)
    endpoint_name: Mapped[str] = mapped_column(String(32), server_default="serverless")  # which endpoint
    deployment: Mapped[str] = mapped_column(String(32), server_default="default")  # and its deployment
    batch_id: Mapped[str | None] = mapped_column(String(40), index=True)  # a batch line's job (migration 0011)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    input_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    output_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    instance_type: Mapped[str | None] = mapped_column(String(32))  # capacity entries: what the minutes ran on
    instance_minutes: Mapped[int] = mapped_column(Integer, server_default="0")  # > 0: a capacity entry
    per_instance_minute: Mapped[Decimal] = mapped_column(ExactDecimal, server_default="0")
    cost: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A request's milliseconds from its start to its last token (migration 0016); none for capacity entries
    # and for entries written before it.
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    usage_day: Mapped[str] = mapped_column(String(10))  # UTC day of started_at, for portable GROUP BY
    usage_hour: Mapped[str] = mapped_column(String(13))  # UTC hour of started_at, for the Stripe export
    status: Mapped[str] = mapped_column(String(16))
    billable: Mapped[bool] = mapped_column(Boolean)
    period: Mapped[str] = mapped_column(String(7), index=True)  # billing period (YYYY-MM) it counts in
    kind: Mapped[str] = mapped_column(String(16))  # "usage" or "adjustment"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PriceRow(Base):
    """A model's price per 1M tokens in one tier (``online`` or ``batch``) from ``effective_from`` until the next
    entry of the same model and tier."""

    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("model", "tier", "effective_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    tier: Mapped[str] = mapped_column(String(8), server_default="online")  # migration 0012
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    input_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    output_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Derived columns of a ledger entry, shared by the projections: the meter it counts on, and whether it is a
# request (capacity entries are not requests).
LEDGER_METER = case((LedgerEntryRow.instance_minutes > 0, "instance_minutes"), else_="tokens")
REQUEST_COUNT = func.count(case((LedgerEntryRow.instance_minutes == 0, 1)))


class InstancePriceRow(Base):
    """A model's price per instance-minute on one instance type from ``effective_from`` until the next entry
    of the same (model, instance type)."""

    __tablename__ = "instance_prices"
    __table_args__ = (UniqueConstraint("model", "instance_type", "effective_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    instance_type: Mapped[str] = mapped_column(String(32))
    per_minute: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(8))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClosedPeriodRow(Base):
    """A billing period that is closed: its statements are final."""

    __tablename__ = "closed_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StatementRow(Base):
    """One tenant's frozen totals for a closed period, rounded once to minor units."""

    __tablename__ = "statements"
    __table_args__ = (UniqueConstraint("period", "tenant"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7))
    tenant: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(8))
    requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[Decimal] = mapped_column(ExactDecimal)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[str] = mapped_column(Text)  # JSON: per-model lines of the statement
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StripeExportRow(Base):
    """One meter event the exporter decided to send: recorded 'pending' before sending, 'sent' after."""

    __tablename__ = "stripe_exports"
    __table_args__ = (UniqueConstraint("tenant", "model", "usage_hour", "token_type", "seq"),)

    identifier: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    usage_hour: Mapped[str] = mapped_column(String(13))
    token_type: Mapped[str] = mapped_column(String(16))  # "input", "output" or "instance_minutes"
    seq: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(BigInteger)
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))  # "pending" or "sent"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsageRollupRow(Base):
    """The ledger summed per hour and report dimension (migration 0016): what reports read when they can.

    Written in the ledger writer's transaction from the entries that transaction adds, so at every commit it
    equals ``GROUP BY`` over ``ledger_entries`` (``billing.rollup.drift`` checks it). Never edited otherwise."""

    __tablename__ = "usage_rollups"
    __table_args__ = (UniqueConstraint(
        "tenant", "usage_hour", "model", "key_id", "endpoint_name", "deployment", "billable", "meter",
        "input_per_million", "output_per_million", "per_instance_minute", "currency", name="usage_rollups_grain"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    usage_day: Mapped[str] = mapped_column(String(10))
    usage_hour: Mapped[str] = mapped_column(String(13))
    model: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(80))
    endpoint_name: Mapped[str] = mapped_column(String(32))
    deployment: Mapped[str] = mapped_column(String(32))
    billable: Mapped[bool] = mapped_column(Boolean)
    meter: Mapped[str] = mapped_column(String(16))  # "tokens" or "instance_minutes"
    input_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    output_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    per_instance_minute: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(8))
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    instance_minutes: Mapped[int] = mapped_column(BigInteger)
    timed_requests: Mapped[int] = mapped_column(BigInteger)  # entries with a duration_ms
    duration_ms: Mapped[int] = mapped_column(BigInteger)  # their sum
