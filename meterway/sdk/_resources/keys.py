"""``client.keys``: API keys (``/v1/keys``)."""

from __future__ import annotations

from typing import Any

from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._types import ApiKey, Deleted


class Keys(Resource):
    """Create (admin), list, read, update (admin), revoke and rotate API keys."""

    def create(self, *, tenant: str, name: str | None = None, role: str | None = None, **limits: Any) -> ApiKey:
        """A new key of ``tenant``; its ``secret`` is in this answer only. ``limits``: rpm, tpm, rpd,
        max_concurrency, budget_amount, budget_period, models, endpoints, expires_at."""
        return self._one(ApiKey, "POST", "/v1/keys", json=body_of(tenant=tenant, name=name, role=role, **limits))

    def list(self, *, tenant: str | None = None, include_revoked: bool | None = None) -> list[ApiKey]:
        """The caller's keys (the admin: every tenant's, or ``tenant``'s)."""
        return self._list(ApiKey, "/v1/keys", {"tenant": tenant, "include_revoked": include_revoked})

    def get(self, key_id: str) -> ApiKey:
        """One key (never its secret)."""
        return self._one(ApiKey, "GET", f"/v1/keys/{key_id}")

    def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change name, role, limits, models, endpoints or expires_at; a None value sends null (``models=None``
        lets the key call any model again)."""
        return self._one(ApiKey, "PATCH", f"/v1/keys/{key_id}", json=changes)

    def revoke(self, key_id: str) -> Deleted:
        """Revoke the key at once."""
        return self._deleted("DELETE", f"/v1/keys/{key_id}")

    def rotate(self, key_id: str) -> ApiKey:
        """A new secret with the same limits, role and scope (in this answer); the old one keeps working for the
        server's rotation grace period."""
        return self._one(ApiKey, "POST", f"/v1/keys/{key_id}/rotate")
