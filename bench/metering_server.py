"""A gateway whose meter discards usage events: the "metering off" side of ``bench.metering_bench``.

Everything else is the product's own ``create_app``; never a way to serve unbilled traffic for real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn

from meterway.db import migrate
from meterway.settings import Settings
from service.app import create_app

if TYPE_CHECKING:
    from billing.events import UsageEvent


class DiscardMeter:
    """Drops every event (and is always available)."""

    async def record(self, event: UsageEvent) -> None:
        return None


def main() -> None:
    settings = Settings.from_env()
    migrate(settings.database_url)
    uvicorn.run(create_app(settings, meter=DiscardMeter()), host=settings.server.host, port=settings.server.port,
                log_config=None, access_log=False)


if __name__ == "__main__":
    main()
