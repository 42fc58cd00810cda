"""Which usage bus an app runs: the registry of implementations, chosen by the settings.

``billing.bus`` holds the interface alone; this module picks an implementation, so neither imports the other back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.bus import BusFactory, BusOptions, UsageBus
from billing.local_bus import open_local_bus
from billing.nats_bus import open_nats_bus

if TYPE_CHECKING:
    from meterway.db import Database
    from meterway.settings import Settings


def bus_registry() -> dict[str, BusFactory]:
    """The bus implementations by name ('local': outbox table, 'nats': JetStream)."""
    return {"local": open_local_bus, "nats": open_nats_bus}


def bus_kind(settings: Settings) -> str:
    """Which bus the settings ask for: NATS when a URL is set, else the local outbox."""
    return "nats" if settings.billing.nats_url else "local"


def open_bus(settings: Settings, database: Database, options: BusOptions | None = None,
             kind: str | None = None) -> UsageBus:
    """Build (without connecting) the bus the settings ask for (or ``kind``)."""
    factory = bus_registry()[kind or bus_kind(settings)]
    return factory(settings, database, options or BusOptions())
