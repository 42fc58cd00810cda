"""The request path's lookups (API keys, prices): one lookup per burst, fresh while in use, cleared at once."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import update

from meterway.db import Database, migrate
from meterway.errors import AuthenticationFailed
from service.auth import KeyHasher, Principal
from service.keys import KeyService
from service.tables import ApiKeyRow
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ADMIN = Principal(tenant=None, key_id=None, is_admin=True)


class Source:
    """A table the cache reads, counting reads."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {"a": 1, "b": 2}
        self.one_reads = 0
        self.many_reads = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def one(self, key: str) -> int:
        self.one_reads += 1
        await self.gate.wait()
        if key not in self.values:
            raise KeyError(key)
        return self.values[key]

    async def many(self, keys: list[str]) -> dict[str, int]:
        self.many_reads += 1
        return {k: self.values[k] for k in keys if k in self.values}


def cache(source: Source, *, fresh_s: float = 60.0, active_s: float = 60.0) -> WarmCache[str, int]:
    return WarmCache(source.one, source.many, fresh_s=fresh_s, refresh_s=60.0, active_s=active_s, name="test")


async def test_a_burst_of_misses_shares_one_lookup() -> None:
    source = Source()
    source.gate.clear()
    warm = cache(source)
    gets = [asyncio.ensure_future(warm.get("a")) for _ in range(8)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*gets) == [1] * 8
    assert source.one_reads == 1
    assert await warm.get("a") == 1 and source.one_reads == 1  # then served from the cache


async def test_a_failed_lookup_is_not_cached() -> None:
    source = Source()
    warm = cache(source)
    with pytest.raises(KeyError):
        await warm.get("c")
    source.values["c"] = 3
    assert await warm.get("c") == 3


async def test_refresh_rereads_entries_in_use_and_drops_gone_and_idle_ones() -> None:
    source = Source()
    warm = cache(source, active_s=0.0)
    await warm.get("a")
    await warm.refresh()  # "a" was used longer than active_s ago: dropped without a read
    assert source.many_reads == 0
    warm = cache(source)
    assert (await warm.get("a"), await warm.get("b")) == (1, 2)
    source.values = {"a": 10}
    await warm.refresh()
    assert source.many_reads == 1
    assert await warm.get("a") == 10
    with pytest.raises(KeyError):  # "b" is gone from the source: dropped, so the next use looks it up
        await warm.get("b")


async def test_clear_during_a_lookup_stores_nothing() -> None:
    source = Source()
    source.gate.clear()
    warm = cache(source)
    pending = asyncio.ensure_future(warm.get("a"))
    while source.one_reads == 0:  # the lookup has started
        await asyncio.sleep(0)
    warm.clear()
    source.gate.set()
    assert await pending == 1
    await warm.get("a")
    assert source.one_reads == 2


async def test_stale_entries_are_read_again() -> None:
    source = Source()
    warm = cache(source, fresh_s=0.0)
    await warm.get("a")
    source.values["a"] = 5
    assert await warm.get("a") == 5


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[KeyService, KeyService]]:
    """Two gateways' key services over one database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    await asyncio.to_thread(migrate, url)
    databases = [Database.connect(url), Database.connect(url)]
    hasher = KeyHasher("pepper")
    services = tuple(KeyService(d.sessions, hasher, "admin-secret", 60) for d in databases)
    yield services[0], services[1]
    for database in databases:
        await database.close()


async def test_a_key_revoked_on_another_replica_is_refused_after_the_next_refresh(
        replicas: tuple[KeyService, KeyService]) -> None:
    here, there = replicas
    issued = await there.create(f"t-{uuid.uuid4().hex[:6]}", "ci")
    assert issued.secret is not None
    assert (await here.authenticate(issued.secret)).principal.key_id == issued.row.id
    await there.revoke(ADMIN, issued.row.id)
    assert (await here.authenticate(issued.secret)).principal.key_id == issued.row.id  # cached here
    await here.reverify()
    with pytest.raises(AuthenticationFailed):
        await here.authenticate(issued.secret)


async def test_a_limit_changed_on_another_replica_applies_after_the_next_refresh(
        replicas: tuple[KeyService, KeyService], tmp_path: Path) -> None:
    here, there = replicas
    issued = await there.create(f"t-{uuid.uuid4().hex[:6]}", "ci")
    assert issued.secret is not None
    assert (await here.authenticate(issued.secret)).principal.limits.rpm in (None, 0)
    database = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    async with database.sessions.begin() as session:
        await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == issued.row.id).values(rpm=7))
    await database.close()
    await here.reverify()
    assert (await here.authenticate(issued.secret)).principal.limits.rpm == 7
