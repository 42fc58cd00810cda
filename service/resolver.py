"""Model resolution: which models a caller sees and which one a request names.

The catalog is public; fine-tunes belong to one tenant and are indistinguishable from a missing model for
anyone else. Named endpoints with several deployments (traffic split, mirroring) plug in as another
``service.routing.Routes`` without touching the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from meterway.errors import ModelNotFound
from models.catalog import ModelSpec
from service.auth import Principal

TenantModels = Callable[[Principal], Awaitable[list[ModelSpec]]]
FindModel = Callable[[str, Principal], Awaitable[ModelSpec | None]]


class CatalogResolver:
    """The static catalog plus, when wired, the tenant's own fine-tuned models."""

    def __init__(self, catalog: list[ModelSpec], tenant_models: TenantModels | None = None,
                 find_model: FindModel | None = None) -> None:
        self._catalog = {spec.id: spec for spec in catalog}
        self._tenant_models = tenant_models
        self._find_model = find_model

    async def visible(self, principal: Principal) -> list[ModelSpec]:
        own = await self._tenant_models(principal) if self._tenant_models else []
        return [*self._catalog.values(), *own]

    async def resolve(self, model_id: str, principal: Principal) -> ModelSpec:
        spec = self._catalog.get(model_id)
        if spec is None and self._find_model is not None:
            spec = await self._find_model(model_id, principal)
        if spec is None or not spec.visible_to(principal.tenant, admin=principal.is_admin):
            raise ModelNotFound(model_id)
        return spec



