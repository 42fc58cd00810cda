"""Alembic environment: runs meterway's migrations on the async engine named by the settings."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def _url() -> str:
    url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from meterway.settings import Settings

    return Settings.from_env().database_url


def _metadata() -> MetaData:
    """Every package's tables, on the one metadata ``alembic check`` compares the migrated schema with."""
    import audit.tables  # noqa: F401  (each module registers its tables on Base)
    import batches.tables  # noqa: F401
    import billing.tables  # noqa: F401
    import endpoints.tables  # noqa: F401
    import identity.tables  # noqa: F401
    import models.finetune.tables  # noqa: F401
    import service.tables  # noqa: F401
    from meterway.tables import Base

    return Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=_metadata(), render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


# PostgreSQL: replicas that start together migrate one at a time (the later ones find the schema at head).
# SQLite's single writer lock serialises them already.
MIGRATION_LOCK = 0x6D77_6D69  # "mwmi"


async def _online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        locked = connection.dialect.name == "postgresql"
        if locked:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.commit()  # the lock is the session's: it outlives this transaction
        try:
            await connection.run_sync(_run)
            await connection.commit()
        finally:
            if locked:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_online())
