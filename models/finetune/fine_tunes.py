"""The fine-tune side of an app: catalog lookups by caller, the fine-tune service and the upload sessions.

Built once at the composition root (``service/app.py``); its routes are ``service/routes/fine_tunes.py``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.finetune.catalog import resolve, tenant_models
from models.finetune.limits import UploadLimits
from models.finetune.service import FineTuneService
from models.finetune.uploads import UploadSessions

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from meterway.settings import Settings
    from models.catalog import ModelSpec
    from models.finetune.catalog import Caller
    from models.finetune.service import PriceSetter


class FineTuneCatalog:
    """The fine-tune side of the app, built once by ``create_app``: catalog lookups and services."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: Path,
        catalog: Mapping[str, ModelSpec],
        *,
        limits: UploadLimits | None = None,
        prices: PriceSetter | None = None,
    ) -> None:
        self._sessions = sessions
        self._catalog = [spec for spec in catalog.values() if spec.tenant is None]
        limits = limits or UploadLimits()
        self.service = FineTuneService(sessions, store, limits, self._catalog, prices)
        self.uploads = UploadSessions(store, limits)

    @classmethod
    def from_settings(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                      catalog: Sequence[ModelSpec], prices: PriceSetter | None = None) -> FineTuneCatalog:
        """Wired as ``create_app`` needs it: the settings' store and upload limit, the billing price book."""
        return cls(sessions, settings.store_dir, {spec.id: spec for spec in catalog},
                   limits=UploadLimits.from_upload_limit(settings.server.max_upload_bytes), prices=prices)

    async def visible(self, principal: Caller) -> list[ModelSpec]:
        """The fine-tunes ``principal`` may list (its tenant's; every tenant's for the admin)."""
        async with self._sessions() as session:
            return await tenant_models(
                session, None if principal.is_admin else principal.tenant, catalog=self._catalog
            )

    async def find(self, model: str, principal: Caller) -> ModelSpec | None:
        """The fine-tune ``model`` if ``principal`` may call it, else None (a 404 like any unknown model)."""
        async with self._sessions() as session:
            return await resolve(session, model, principal, catalog=self._catalog)

    async def spec_for_pool(self, model: str) -> ModelSpec | None:
        """Any live fine-tune by id, without a caller (the pool runs what the gateway already authorised)."""
        async with self._sessions() as session:
            return await resolve(session, model, _POOL, catalog=self._catalog)


@dataclasses.dataclass(frozen=True)
class _Internal:
    tenant: str | None = None
    is_admin: bool = True


_POOL = _Internal()
