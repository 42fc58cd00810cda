"""The database: one async engine and session factory per app, and Alembic migrations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@dataclass
class Database:
    """The engine and its session factory; built by ``create_app`` and closed on shutdown."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, *, echo: bool = False) -> Database:
        kwargs: dict[str, object] = {"echo": echo}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        engine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            _sqlite_pragmas(engine)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _sqlite_file(url: str) -> Path | None:
    return Path(url.split("///", 1)[1]) if url.startswith("sqlite") else None


def _config(url: str) -> Any:
    from alembic.config import Config

    config = Config()  # no alembic.ini: an installed package has only the migrations package
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (synchronously; call before serving). On PostgreSQL one
    migration runs at a time (an advisory lock in migrations/env.py)."""
    from alembic import command

    if (file := _sqlite_file(url)) is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(_config(url), revision)


def check_schema(url: str) -> None:
    """Raise ``RuntimeError`` unless the database is at the migrations' head (``serve`` without migrating)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    async def current() -> str | None:
        if (file := _sqlite_file(url)) is not None and not file.exists():
            return None  # no database file yet
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        finally:
            await engine.dispose()

    head, found = ScriptDirectory.from_config(_config(url)).get_current_head(), asyncio.run(current())
    if found != head:
        raise RuntimeError(f"the database schema is at revision {found or 'none'}, this code needs {head}: "
                           "run `meterway migrate` first")
