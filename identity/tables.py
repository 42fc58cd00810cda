"""ORM table of the tenants' OpenID Connect issuers (migration 0014)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base


class TenantIdentityRow(Base):
    """A tenant's issuer: its tokens (``iss`` equal to ``issuer``, ``aud`` holding ``audience``) act for it."""

    __tablename__ = "tenant_identities"
    __table_args__ = (UniqueConstraint("issuer", name="uq_tenant_identities_issuer"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512))  # unique: one issuer, one tenant
    audience: Mapped[str] = mapped_column(String(256))
    subject_claim: Mapped[str] = mapped_column(String(64))  # which claim names the caller ("sub")
    roles_claim: Mapped[str] = mapped_column(String(64))  # which claim lists its roles ("roles")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
