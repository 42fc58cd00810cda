"""The access tests' gateway (one real server per module, on SQLite and on PostgreSQL) and keys of each role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"METERWAY_DATABASE_URL": request.getfixturevalue("module_pg_url")} if request.param == "postgresql" else {}
    process = ServerProcess(home=tmp_path_factory.mktemp("access"), store=store_dir, env=env).start()
    yield process
    process.stop()


def keyed(gateway: ServerProcess, tenant: str, **fields: Any) -> httpx.Client:
    """A client with a new key of ``tenant`` (``fields``: its role, scope, expiry or limits)."""
    secret = gateway.create_key(tenant, **fields)["secret"]
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
