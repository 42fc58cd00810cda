"""Shared fixtures: the imported model store (once per session) and freshly migrated databases."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]
pytest_plugins = ["tests.battery"]

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("METERWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def store_dir() -> Path:
    """The demo catalog imported into a store kept between runs (the GGUF import runs once per clone)."""
    from models.catalog import load_catalog
    from models.store.importer import import_catalog

    store = Path(os.environ.get("METERWAY_TEST_STORE", REPO / "var" / "test-store"))
    import_catalog(load_catalog(), store, progress=lambda _msg: None)
    return store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite database file, migrated to head."""
    from meterway.db import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'meterway.db'}"
    migrate(url)
    return url


def _pg_admin(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database on the machine's server, migrated by Alembic, dropped afterwards."""
    from meterway.db import migrate

    name = f"mw_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, migrated PostgreSQL database for one test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """A new, migrated PostgreSQL database shared by one module's tests (e.g. by their server)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases, for tests that must hold on each."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
def server(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One gateway on SQLite (embedded defaults) for the whole session, real models, test model enabled."""
    # The 2,000-request conservation test drives the echo model with abandoned streams that hold their queue
    # slot until the cancel reaches the model; a deeper queue keeps that test about billing, not overload.
    env = {"METERWAY_POOL_QUEUE_LIMIT": "512"}
    process = ServerProcess(home=tmp_path_factory.mktemp("server"), store=store_dir, env=env).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def start_server(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Start extra gateways with their own settings (``env``); all are stopped at the end of the session."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, home: Path | None = None) -> ServerProcess:
        process = ServerProcess(home=home or tmp_path_factory.mktemp("gateway"), store=store_dir, env=env or {})
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()
