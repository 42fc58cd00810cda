"""Which reservation store a throttle runs on: the registry of implementations by URL scheme.

``service.throttle.store`` holds the interface alone; this module picks an implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from service.throttle.memory import MemoryStore
from service.throttle.redis_store import RedisStore
from service.throttle.store import ReservationStore

StoreFactory = Callable[[str], ReservationStore]


def _memory(url: str) -> ReservationStore:
    return MemoryStore()


def _redis(url: str) -> ReservationStore:
    return RedisStore.from_url(url)


#: URL scheme → store factory. Read-only; pass another mapping to ``open_store`` to plug in a store.
STORES: Mapping[str, StoreFactory] = MappingProxyType({
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
})


def open_store(url: str, stores: Mapping[str, StoreFactory] = STORES) -> ReservationStore:
    """The store for ``url`` (``memory://``, ``redis://host:port/db``...); connects lazily, no I/O here."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    try:
        factory = stores[scheme]
    except KeyError:
        raise ValueError(f"no limit store for {url!r}; known schemes: {sorted(stores)}") from None
    return factory(url)
