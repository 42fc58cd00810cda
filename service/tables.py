"""ORM tables of the gateway: tenants and their API keys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base


class TenantRow(Base):
    """A customer: owns keys, usage, fine-tunes; optionally linked to a Stripe customer."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), default=None)
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, default=None)
    budget_amount: Mapped[Decimal | None] = mapped_column(Numeric(20, 6), default=None)
    budget_period: Mapped[str | None] = mapped_column(String(8), default=None)


class ApiKeyRow(Base):
    """A tenant API key. Only an HMAC of the secret is stored; ``prefix`` finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    rpd: Mapped[int | None] = mapped_column(Integer, default=None)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, default=None)
    budget_amount: Mapped[Decimal | None] = mapped_column(Numeric(20, 6), default=None)
    budget_period: Mapped[str | None] = mapped_column(String(8), default=None)
    # Its role and scope (0015): what it may do (meterway.roles) and the only models and endpoints it may call
    # (None: any).
    role: Mapped[str] = mapped_column(String(16), default="owner", server_default="owner")
    models: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    endpoints: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
