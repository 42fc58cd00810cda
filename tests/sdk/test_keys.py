"""Keys, tenants and the error mapping through ``meterway.Client`` against a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from meterway import AuthenticationError, BadRequestError, Client, NotFoundError

if TYPE_CHECKING:
    from meterway.sdk import ApiKey
    from tests.server import ServerProcess


def test_key_lifecycle(admin: Client, tenant: str) -> None:
    created: ApiKey = admin.keys.create(tenant=tenant, name="ci", rpm=100, models=["meterway-echo"])
    assert created.secret and created.secret.startswith(created.prefix)
    assert (created.tenant, created.name, created.rpm, created.models) == (tenant, "ci", 100, ["meterway-echo"])
    assert created["object"] == "api_key"  # every field the server sent stays reachable
    assert [k.id for k in admin.keys.list(tenant=tenant)] == [created.id]
    assert admin.keys.get(created.id).secret is None
    updated = admin.keys.update(created.id, name="renamed", models=None)
    assert (updated.name, updated.models, updated.rpm) == ("renamed", None, 100)
    rotated = admin.keys.rotate(created.id)
    assert rotated.id != created.id and rotated.secret
    assert admin.keys.revoke(rotated.id).deleted is True
    listed = admin.keys.list(tenant=tenant, include_revoked=True)
    assert {k.id for k in listed} == {created.id, rotated.id}
    assert next(k for k in listed if k.id == rotated.id).revoked_at is not None


def test_tenant_sees_and_uses_its_key(server: ServerProcess, admin: Client, tenant: str) -> None:
    secret = str(admin.keys.create(tenant=tenant).secret)
    with Client(server.url, secret) as client:
        [mine] = client.keys.list()
        assert mine.tenant == tenant
    shown = admin.tenants.update(tenant, rpm=50, budget_amount="12.50", budget_period="month")
    assert (shown.id, shown.rpm, shown.budget_amount, shown.budget_period) == (tenant, 50, "12.50", "month")
    assert admin.tenants.get(tenant).rpm == 50
    assert tenant in {t.id for t in admin.tenants.list()}


def test_errors_map_to_their_classes(server: ServerProcess, admin: Client, tenant: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        admin.keys.get("key_doesnotexist")
    assert missing.value.status_code == 404 and missing.value.message
    with pytest.raises(NotFoundError) as no_model:
        admin.fine_tunes.get("ft:nothing:here:at-all")
    assert no_model.value.type == "invalid_request_error" or no_model.value.code is not None
    with pytest.raises(BadRequestError) as bad:
        admin.usage.report(group_by="planet")
    assert (bad.value.status_code, bad.value.param) == (400, "group_by")
    with Client(server.url, "mw-not-a-key") as stranger, pytest.raises(AuthenticationError) as refused:
        stranger.keys.list()
    assert refused.value.status_code == 401


def test_no_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METERWAY_API_KEY", raising=False)
    with pytest.raises(ValueError, match="METERWAY_API_KEY"):
        Client("http://127.0.0.1:1")


def test_environment_gives_url_and_key(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.server import ADMIN_KEY

    monkeypatch.setenv("METERWAY_URL", server.url)
    monkeypatch.setenv("METERWAY_API_KEY", ADMIN_KEY)
    with Client() as client:
        assert client.base_url == server.url
        assert isinstance(client.get("/v1/tenants")["data"], list)


def test_tenant_identity_provider(admin: Client, tenant: str) -> None:
    admin.keys.create(tenant=tenant)
    issuer = f"https://login.example.com/{tenant}"
    shown = admin.tenants.set_identity(tenant, issuer=issuer, audience="meterway", roles_claim="groups")
    assert (shown.issuer, shown.audience, shown.roles_claim) == (issuer, "meterway", "groups")
    assert admin.tenants.get_identity(tenant).issuer == issuer
    assert admin.tenants.delete_identity(tenant).deleted is True
    with pytest.raises(NotFoundError):
        admin.tenants.get_identity(tenant)


def test_workers_importing_the_vocabulary_do_not_load_httpx() -> None:
    import subprocess
    import sys

    code = ("import sys, meterway, meterway.errors, meterway.settings; assert 'httpx' not in sys.modules; "
            "from meterway import Client; assert 'httpx' in sys.modules and Client.__name__ == 'Client'")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
