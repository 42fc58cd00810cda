"""Fine-tune use cases: create from a staged upload, list, get, delete — each scoped to the caller's tenant.

Another tenant's fine-tune is ``ModelNotFound``, the same error a model that does not exist gives.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from sqlalchemy import select

from meterway.errors import Conflict, InvalidRequest, ModelNotFound, UploadRejected
from models.finetune.blobs import BlobStore
from models.finetune.catalog import FINE_TUNE_PREFIX, Caller, model_id
from models.finetune.ingest import ingest
from models.finetune.staging import StagingArea
from models.finetune.tables import FineTunedModelRow

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from models.catalog import ModelSpec
    from models.finetune.limits import UploadLimits

log = structlog.get_logger(__name__)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


class PriceSetter(Protocol):
    """The price book's write side (``billing.prices.PriceBook`` fits)."""

    async def set_price(
        self,
        model: str,
        input_per_million: Decimal,
        output_per_million: Decimal,
        effective_from: datetime | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class NewFineTune:
    """A validated create request (the upload itself is in a ``StagingArea``)."""

    tenant: str
    base: ModelSpec
    name: str
    kind: str
    input_price_per_million: Decimal
    output_price_per_million: Decimal

    @property
    def id(self) -> str:
        return model_id(self.base.id, self.tenant, self.name)


def parse_price(raw: str | None, default: Decimal, field: str) -> Decimal:
    """A non-negative decimal string (floats are inexact, so only strings are accepted)."""
    if raw is None or raw == "":
        return default
    try:
        value = Decimal(raw)
    except (InvalidOperation, TypeError):
        raise InvalidRequest(f"{field} must be a decimal string", param=field) from None
    if not value.is_finite() or value < 0:
        raise InvalidRequest(f"{field} must be a non-negative decimal", param=field)
    return value


class FineTuneService:
    """Creates, lists and deletes fine-tunes in one model store and database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: Path,
        limits: UploadLimits,
        catalog: Sequence[ModelSpec],
        prices: PriceSetter | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.limits = limits
        self.blobs = BlobStore(store)
        self._bases = {s.id: s for s in catalog if s.tenant is None and s.task == "chat" and not s.builtin}
        self._prices = prices

    def staging(self) -> StagingArea:
        """A fresh temporary area for one upload (use as a context manager: it is always removed)."""
        return StagingArea(self.store, self.limits)

    def new_request(
        self,
        principal: Caller,
        *,
        base: str,
        name: str,
        kind: str,
        tenant: str | None = None,
        input_price: str | None = None,
        output_price: str | None = None,
    ) -> NewFineTune:
        """Validate the create fields; the admin names the tenant, a tenant key uses its own."""
        owner = principal.tenant or (tenant if principal.is_admin else None)
        if not owner:
            raise InvalidRequest(
                "the platform admin must name the tenant that owns the fine-tune", param="tenant"
            )
        spec = self._bases.get(base)
        if spec is None:
            raise UploadRejected(f"base {base!r} is not a catalog chat model", param="base")
        if not _NAME.match(name or ""):
            raise InvalidRequest(
                "name must be 1-48 of a-z, 0-9, '-', '_' starting with a letter or digit", param="name"
            )
        if kind not in ("lora", "full"):
            raise InvalidRequest(f"kind must be 'lora' or 'full', got {kind!r}", param="kind")
        return NewFineTune(
            owner,
            spec,
            name,
            kind,
            parse_price(input_price, spec.input_price_per_million, "input_price_per_million"),
            parse_price(output_price, spec.output_price_per_million, "output_price_per_million"),
        )

    async def ensure_new(self, request: NewFineTune) -> None:
        """409 when a live fine-tune already has this id (checked before a resumable upload is consumed)."""
        async with self.sessions() as session:
            await self._ensure_free(session, request.id)

    async def create(self, request: NewFineTune, area: StagingArea) -> FineTunedModelRow:
        """Check the staged upload, store it, record it and price it. The area is removed by its owner."""
        await self.ensure_new(request)
        stored = await asyncio.to_thread(
            ingest,
            self.store,
            area,
            kind=request.kind,
            base=request.base.store_name,
            tenant=request.tenant,
            name=request.name,
        )
        row = FineTunedModelRow(
            id=request.id,
            tenant=request.tenant,
            base=request.base.id,
            kind=request.kind,
            name=request.name,
            store_path=str(stored.store_path),
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            input_price_per_million=request.input_price_per_million,
            output_price_per_million=request.output_price_per_million,
            created_at=datetime.now(UTC),
            deleted_at=None,
        )
        try:
            if self._prices is not None:
                await self._prices.set_price(
                    request.id, request.input_price_per_million, request.output_price_per_million
                )
            async with self.sessions() as session, session.begin():
                await self._ensure_free(session, request.id)
                await session.merge(row)
        except BaseException:
            if stored.created:
                await asyncio.to_thread(self.blobs.remove, self.store / stored.store_path)
            raise
        log.info("fine-tune created", model=request.id, kind=request.kind)
        return row

    @staticmethod
    async def _ensure_free(session: AsyncSession, fine_tune_id: str) -> None:
        existing = await session.get(FineTunedModelRow, fine_tune_id)
        if existing is not None and existing.deleted_at is None:
            raise Conflict(f"fine-tuned model '{fine_tune_id}' already exists; delete it first", param="name")

    async def list(self, principal: Caller) -> list[FineTunedModelRow]:
        """The caller's live fine-tunes (every tenant's for the admin)."""
        query = (
            select(FineTunedModelRow)
            .where(FineTunedModelRow.deleted_at.is_(None))
            .order_by(FineTunedModelRow.created_at)
        )
        if not principal.is_admin:
            query = query.where(FineTunedModelRow.tenant == principal.tenant)
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())

    async def get(self, principal: Caller, fine_tune_id: str) -> FineTunedModelRow:
        """One live fine-tune the caller may see, else ``ModelNotFound``."""
        async with self.sessions() as session:
            return await self._visible(session, principal, fine_tune_id)

    async def delete(self, principal: Caller, fine_tune_id: str) -> FineTunedModelRow:
        """Mark the fine-tune deleted and remove its files (blobs shared with others stay)."""
        async with self.sessions() as session, session.begin():
            row = await self._visible(session, principal, fine_tune_id)
            row.deleted_at = datetime.now(UTC)
        await asyncio.to_thread(self.blobs.remove, self.store / row.store_path)
        log.info("fine-tune deleted", model=fine_tune_id)
        return row

    @staticmethod
    async def _visible(session: AsyncSession, principal: Caller, fine_tune_id: str) -> FineTunedModelRow:
        row = None
        if fine_tune_id.startswith(FINE_TUNE_PREFIX):
            row = await session.get(FineTunedModelRow, fine_tune_id)
        if (
            row is None
            or row.deleted_at is not None
            or not (principal.is_admin or row.tenant == principal.tenant)
        ):
            raise ModelNotFound(fine_tune_id)
        return row
