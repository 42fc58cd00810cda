"""``/v1/tenants/{tenant}/identity``: the admin or the tenant itself sets, reads and removes its issuer; the
URL is checked, an issuer maps to one tenant only (409), and another tenant's is a 404."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.oidc_issuer import OidcIssuer

if TYPE_CHECKING:
    from tests.identity.conftest import TokenTenant
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow


def test_a_tenant_manages_its_own_issuer(tenant: TokenTenant, gateway: ServerProcess) -> None:
    spec = {"issuer": tenant.issuer.url, "audience": "api://renamed", "subject_claim": "oid",
            "roles_claim": "realm_access.roles"}
    with tenant.client() as owner:
        changed = owner.put(f"/v1/tenants/{tenant.name}/identity", json=spec)
        assert changed.status_code == 200, changed.text
        # The owner's token was for the old audience: from now on it is refused.
        assert owner.get(f"/v1/tenants/{tenant.name}/identity").status_code == 401
    with gateway.admin() as admin:
        shown = admin.get(f"/v1/tenants/{tenant.name}/identity").json()
    assert {k: shown[k] for k in spec} == spec and shown["tenant"] == tenant.name
    key = gateway.create_key(tenant.name)["secret"]
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}) as keyed:  # its key
        same = keyed.put(f"/v1/tenants/{tenant.name}/identity", json=spec)
        assert same.status_code == 200 and same.json()["audience"] == "api://renamed"
        assert keyed.delete(f"/v1/tenants/{tenant.name}/identity").status_code == 200
        assert keyed.get(f"/v1/tenants/{tenant.name}/identity").status_code == 404


@pytest.mark.parametrize("issuer", ["ftp://idp.example", "http://idp.example/realms/x", "https://10.1.2.3/idp",
                                    "https://idp.example/?tenant=x", "not a url at all"])
def test_an_issuer_url_the_gateway_may_not_fetch_is_refused(gateway: ServerProcess, issuer: str) -> None:
    with gateway.admin() as admin:
        refused = admin.put(f"/v1/tenants/acme-{uuid.uuid4().hex[:6]}/identity",
                            json={"issuer": issuer, "audience": "api://x"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "issuer", refused.text


def test_an_issuer_maps_to_one_tenant(tenant: TokenTenant, gateway: ServerProcess,
                                      platform_issuer: OidcIssuer) -> None:
    other = f"globex-{uuid.uuid4().hex[:6]}"
    with gateway.admin() as admin:
        taken = admin.put(f"/v1/tenants/{other}/identity", json={"issuer": tenant.issuer.url, "audience": "a"})
        assert taken.status_code == 409 and "another tenant" in taken.json()["error"]["message"]
        platform = admin.put(f"/v1/tenants/{other}/identity", json={"issuer": platform_issuer.url, "audience": "a"})
        assert platform.status_code == 409 and "platform" in platform.json()["error"]["message"]
        unknown = admin.put(f"/v1/tenants/{other}/identity", json={"issuer": tenant.issuer.url, "audience": "a",
                                                                   "tenant_claim": "tid"})
        assert unknown.status_code == 400 and "tenant_claim" in unknown.text


def test_a_tenant_cannot_touch_another_tenants_issuer(tenant: TokenTenant, gateway: ServerProcess) -> None:
    other = f"globex-{uuid.uuid4().hex[:6]}"
    outsider = OidcIssuer(path=f"/realms/{other}").start()
    try:
        with tenant.client() as owner:
            spec = {"issuer": outsider.url, "audience": "api://x"}
            assert owner.put(f"/v1/tenants/{other}/identity", json=spec).status_code == 404
            assert owner.get(f"/v1/tenants/{other}/identity").status_code == 404
            assert owner.delete(f"/v1/tenants/{other}/identity").status_code == 404
        with gateway.admin() as admin:
            assert admin.get(f"/v1/tenants/{other}/identity").status_code == 404  # nothing was set
    finally:
        outsider.stop()
