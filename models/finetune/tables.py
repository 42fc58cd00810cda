"""ORM table of uploaded fine-tunes (migrated by 0003)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from meterway.tables import Base, ExactDecimal


class FineTunedModelRow(Base):
    """One tenant's fine-tune of a catalog model. Deleting sets ``deleted_at`` (usage keeps its model id)."""

    __tablename__ = "fine_tuned_models"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # ft:<base>:<tenant>:<name>
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    base: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))  # "lora" or "full"
    name: Mapped[str] = mapped_column(String(64))
    store_path: Mapped[str] = mapped_column(String(512))  # relative to the model store
    sha256: Mapped[str] = mapped_column(String(64))  # digest of the manifest (file path -> blob digest)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # The price at upload (the price book holds the effective-dated history and is what billing charges).
    input_price_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    output_price_per_million: Mapped[Decimal] = mapped_column(ExactDecimal)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
