"""API keys end to end, on SQLite and on PostgreSQL: secrets shown once, hashed at rest, revocable, rotatable."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.api.ledger import database_url, ledger_rows
from tests.server import ADMIN_KEY, REPO, ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServerProcess]:
    """A gateway on each database; the PostgreSQL one gets a freshly created, Alembic-migrated database."""
    from tests.conftest import PG_ADMIN_URL, _pg_admin

    env: dict[str, str] = {}
    name = f"mw_{uuid.uuid4().hex[:12]}"
    if request.param == "postgresql":
        _pg_admin(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        env["METERWAY_DATABASE_URL"] = f"{base}/{name}"
    process = ServerProcess(home=tmp_path_factory.mktemp(f"keys-{request.param}"), store=store_dir, env=env)
    process.start()
    yield process
    process.stop()
    if request.param == "postgresql":
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _dump_database(server: ServerProcess) -> str:
    engine = create_async_engine(database_url(server))
    try:
        async with engine.connect() as connection:
            tables = ["api_keys", "tenants", "ledger_entries", "usage_outbox"]
            rows = [str(list(r)) for t in tables for r in await connection.execute(text(f"SELECT * FROM {t}"))]
    finally:
        await engine.dispose()
    return "\n".join(rows)


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"METERWAY_URL": server.url, "METERWAY_API_KEY": ADMIN_KEY, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.battery(11)
async def test_key_lifecycle_and_hygiene(gateway: ServerProcess) -> None:
    created = _cli(gateway, "keys", "create", "--tenant", "acme", "--name", "ci")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split('"secret": "')[1].split('"')[0]
    assert secret.startswith("mw-")
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    reply = await client.chat.completions.create(model="meterway-echo", max_tokens=3,
                                                 messages=[{"role": "user", "content": "hello there"}])
    await ledger_rows(gateway, [reply.id])

    with gateway.admin() as admin:
        listed = admin.get("/v1/keys", params={"tenant": "acme"}).json()["data"]
    assert len(listed) == 1 and listed[0]["secret"] is None
    dump = await _dump_database(gateway) + gateway.log.read_text()
    assert secret not in dump and secret[15:] not in dump  # neither the key nor its secret part at rest or in logs

    key_id = listed[0]["id"]
    revoked = _cli(gateway, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


async def test_rotation_keeps_the_old_secret_for_the_grace_period(gateway: ServerProcess) -> None:
    created = gateway.create_key("rotating", rpm=100)
    with gateway.admin() as admin:
        rotated = admin.post(f"/v1/keys/{created['id']}/rotate").json()
        old = admin.get(f"/v1/keys/{created['id']}").json()
    assert rotated["secret"] != created["secret"] and rotated["rpm"] == 100
    assert old["expires_at"] is not None and old["revoked_at"] is None
    for secret in (created["secret"], rotated["secret"]):
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=str(secret), max_retries=0)
        assert (await client.models.list()).data
    assert rotated["expires_at"] is None


@pytest.mark.battery(10)
async def test_tenant_routes_are_isolated_and_admin_routes_refused(gateway: ServerProcess) -> None:
    own = gateway.create_key("tenant-a")
    other = gateway.create_key("tenant-b")
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {own['secret']}"}) as http:
        mine = (await http.get("/v1/keys")).json()["data"]
        foreign = await http.get(f"/v1/keys/{other['id']}")
        revoke_foreign = await http.delete(f"/v1/keys/{other['id']}")
        create = await http.post("/v1/keys", json={"tenant": "tenant-a", "name": "more"})
    assert {k["tenant"] for k in mine} == {"tenant-a"}
    assert foreign.status_code == 404 and revoke_foreign.status_code == 404
    assert create.status_code == 403 and create.json()["error"]["type"] == "permission_error"


@pytest.mark.battery(10)
async def test_usage_is_per_tenant_and_the_admin_sees_all(gateway: ServerProcess) -> None:
    ids = []
    secrets = {}
    for tenant in ("usage-a", "usage-b"):
        secrets[tenant] = str(gateway.create_key(tenant)["secret"])
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secrets[tenant], max_retries=0)
        reply = await client.chat.completions.create(model="meterway-echo", max_tokens=5,
                                                     messages=[{"role": "user", "content": "a b c"}])
        ids.append(reply.id)
    await ledger_rows(gateway, ids)

    params = {"start": "2020-01-01", "end": "2100-01-01", "group_by": "tenant,model"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        tenant_view = (await http.get("/v1/usage", params=params,
                                      headers={"Authorization": f"Bearer {secrets['usage-a']}"})).json()
        admin_view = (await http.get("/v1/usage", params=params,
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"})).json()
    assert {row["tenant"] for row in tenant_view["data"]} == {"usage-a"}
    assert tenant_view["total"]["completion_tokens"] == 5
    assert {"usage-a", "usage-b"} <= {row["tenant"] for row in admin_view["data"]}
