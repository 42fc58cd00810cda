"""Fine-tunes as catalog entries: the ``ModelSpec`` the gateway and the pool see for each live fine-tune.

A LoRA fine-tune is its base's spec plus ``base`` and ``adapter_path`` (the pool attaches it to the base's
worker); a full-weight fine-tune is an ordinary ``store:`` model. Another tenant's fine-tune resolves to None,
exactly like a model that does not exist.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from models.catalog import ModelSpec, load_catalog
from models.finetune.tables import FineTunedModelRow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession


FINE_TUNE_PREFIX = "ft:"


class Caller(Protocol):
    """What the catalog needs of a caller (``service.auth.Principal`` fits)."""

    @property
    def tenant(self) -> str | None: ...

    @property
    def is_admin(self) -> bool: ...


def model_id(base: str, tenant: str, name: str) -> str:
    """OpenAI-style fine-tune id: ``ft:<base>:<tenant>:<name>``."""
    return f"{FINE_TUNE_PREFIX}{base}:{tenant}:{name}"


def epoch_seconds(moment: datetime) -> int:
    """Unix time of a stored timestamp (SQLite hands them back naive; they were written in UTC)."""
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def spec_for(row: FineTunedModelRow, base: ModelSpec) -> ModelSpec:
    """The serving spec of one fine-tune of ``base``."""
    common: dict[str, Any] = {
        "id": row.id,
        "owned_by": row.tenant,
        "tenant": row.tenant,
        "hidden": False,
        "input_price_per_million": row.input_price_per_million,
        "output_price_per_million": row.output_price_per_million,
        "created": epoch_seconds(row.created_at),
        "extra": {"kind": row.kind, "base": base.id, "sha256": row.sha256},
    }
    if row.kind == "lora":
        return dataclasses.replace(base, base=base.id, adapter_path=row.store_path, **common)
    return dataclasses.replace(base, source=f"store:{row.store_path}", base=None, adapter_path=None, **common)


def _bases(catalog: Sequence[ModelSpec] | None) -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in (load_catalog() if catalog is None else catalog) if spec.tenant is None}


async def tenant_models(
    session: AsyncSession, tenant: str | None, *, catalog: Sequence[ModelSpec] | None = None
) -> list[ModelSpec]:
    """The live fine-tunes ``tenant`` may call (all tenants' when ``tenant`` is None: the admin's view)."""
    query = (
        select(FineTunedModelRow).where(FineTunedModelRow.deleted_at.is_(None)).order_by(FineTunedModelRow.id)
    )
    if tenant is not None:
        query = query.where(FineTunedModelRow.tenant == tenant)
    bases = _bases(catalog)
    rows = (await session.execute(query)).scalars()
    return [spec_for(row, bases[row.base]) for row in rows if row.base in bases]


async def resolve(
    session: AsyncSession, model: str, principal: Caller, *, catalog: Sequence[ModelSpec] | None = None
) -> ModelSpec | None:
    """The fine-tune ``model`` if it exists, is live and ``principal`` may see it; None otherwise."""
    if not model.startswith(FINE_TUNE_PREFIX):
        return None
    row = await session.get(FineTunedModelRow, model)
    if row is None or row.deleted_at is not None:
        return None
    if not (principal.is_admin or row.tenant == principal.tenant):
        return None
    base = _bases(catalog).get(row.base)
    return spec_for(row, base) if base else None
