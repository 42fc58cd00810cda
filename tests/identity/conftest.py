"""The token tests' gateway (one for the package, on SQLite and on PostgreSQL) with a platform issuer, and
tenants that each trust an issuer of their own, all real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import fresh_pg_database
from tests.oidc_issuer import OidcIssuer
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PLATFORM_AUDIENCE = "meterway-platform"


@pytest.fixture(scope="package")
def platform_issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer(path="/platform").start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path, tmp_path_factory: pytest.TempPathFactory,
            platform_issuer: OidcIssuer) -> Iterator[ServerProcess]:
    env = {"METERWAY_PLATFORM_ISSUER": platform_issuer.url, "METERWAY_PLATFORM_AUDIENCE": PLATFORM_AUDIENCE}
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            env["METERWAY_DATABASE_URL"] = stack.enter_context(fresh_pg_database())
        process = ServerProcess(home=tmp_path_factory.mktemp("identity"), store=store_dir, env=env).start()
        yield process
        process.stop()


@dataclass
class TokenTenant:
    """A tenant whose identity provider is ``issuer``; ``token`` mints one of its callers' tokens."""

    name: str
    issuer: OidcIssuer
    audience: str
    gateway: ServerProcess

    def token(self, roles: Any = ("owner",), subject: str = "alice@example.com", **claims: Any) -> str:
        body = self.issuer.claims(self.audience, subject, roles=list(roles) if isinstance(roles, tuple) else roles,
                                  **claims)
        return self.issuer.mint(body)

    def client(self, token: str | None = None) -> httpx.Client:
        """A management client that sends ``token`` (an owner's by default)."""
        return httpx.Client(base_url=self.gateway.url, timeout=30,
                            headers={"Authorization": f"Bearer {token or self.token()}"})


@pytest.fixture
def tenant(gateway: ServerProcess) -> Iterator[TokenTenant]:
    """A fresh tenant with an issuer of its own, set by the admin."""
    name = f"acme-{uuid.uuid4().hex[:6]}"
    issuer = OidcIssuer(path=f"/realms/{name}").start()
    with gateway.admin() as admin:
        made = admin.put(f"/v1/tenants/{name}/identity", json={"issuer": issuer.url, "audience": f"api://{name}"})
    assert made.status_code == 200, made.text
    yield TokenTenant(name, issuer, f"api://{name}", gateway)
    issuer.stop()
