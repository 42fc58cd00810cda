"""``client.tenants``: tenants' limits and Stripe customer (admin), and their identity providers."""

from __future__ import annotations

from typing import Any

from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._types import Deleted, Identity, Tenant


class Tenants(Resource):
    """List, read and update tenants; read, set and remove a tenant's OIDC identity provider."""

    def list(self) -> list[Tenant]:
        """Every tenant (admin)."""
        return self._list(Tenant, "/v1/tenants")

    def get(self, tenant: str) -> Tenant:
        """One tenant (admin)."""
        return self._one(Tenant, "GET", f"/v1/tenants/{tenant}")

    def update(self, tenant: str, **changes: Any) -> Tenant:
        """Set rpm, tpm, max_concurrency, budget_amount, budget_period or stripe_customer_id (admin)."""
        return self._one(Tenant, "PATCH", f"/v1/tenants/{tenant}", json=changes)

    def get_identity(self, tenant: str) -> Identity:
        """The issuer whose tokens act for ``tenant``."""
        return self._one(Identity, "GET", f"/v1/tenants/{tenant}/identity")

    def set_identity(self, tenant: str, *, issuer: str, audience: str, subject_claim: str | None = None,
                     roles_claim: str | None = None) -> Identity:
        """Set (idempotently) the tenant's issuer."""
        body = body_of(issuer=issuer, audience=audience, subject_claim=subject_claim, roles_claim=roles_claim)
        return self._one(Identity, "PUT", f"/v1/tenants/{tenant}/identity", json=body)

    def delete_identity(self, tenant: str) -> Deleted:
        """Remove the tenant's issuer: its tokens are refused from then on."""
        return self._deleted("DELETE", f"/v1/tenants/{tenant}/identity")
