"""The ledger consumer: drains the bus in batches into the ledger, acking only after the commit.

Runs as a background task in the server (``Billing.start``) or as its own process::

    python -m billing.consumer [--nats-stream S --nats-subject X --durable D --ack-wait 30]

Killing it at any instant is safe: an unacked batch comes back and the ledger's unique request id makes the
second write a no-op.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

from billing.bus import BusOptions, BusUnavailable
from billing.buses import open_bus
from billing.ledger import LedgerWriter

if TYPE_CHECKING:
    from billing.bus import UsageBus

log = structlog.get_logger("billing.consumer")


@runtime_checkable
class DirectDrain(Protocol):
    """A bus that can move a batch into the ledger by itself, in one transaction (the local bus on SQLite)."""

    async def drain_into(self, writer: LedgerWriter, max_events: int) -> int | None:
        """Events handled, or None when this bus cannot do it here (then fetch and write as usual)."""
        ...


class LedgerConsumer:
    """Moves events from a bus into the ledger, ``batch_size`` at a time."""

    def __init__(self, bus: UsageBus, writer: LedgerWriter, *, batch_size: int, interval_s: float) -> None:
        self._bus = bus
        self._writer = writer
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._fetch_waited = False

    async def drain_once(self) -> int:
        """Fetch one batch, write it, ack it; returns how many events the batch held."""
        if isinstance(self._bus, DirectDrain):
            handled = await self._bus.drain_into(self._writer, self._batch_size)
            if handled is not None:
                self._fetch_waited = False
                return handled
        batch = await self._bus.fetch(self._batch_size, self._interval_s)
        self._fetch_waited = True  # an empty fetch has already waited ``interval_s`` for events
        if not batch.events:
            return 0
        written = await self._writer.write(batch.events, also=batch.ack_in)
        if batch.ack_in is None:
            await batch.ack()
        log.debug("ledger_batch", events=len(batch.events), new=written)
        return len(batch.events)

    async def drain(self) -> int:
        """Write everything currently on the bus (for the CLI and tests); returns the events handled."""
        total = 0
        while count := await self.drain_once():
            total += count
        return total

    async def run(self) -> None:
        """Drain forever; a failing bus or database is retried, never fatal, so the backlog waits."""
        while True:
            try:
                count = await self.drain_once()
                if count < self._batch_size and (count or not self._fetch_waited):
                    # Caught up: let the next batch gather for one interval rather than writing the few
                    # events that arrived during this one (a transaction per handful costs the gateway CPU).
                    await asyncio.sleep(self._interval_s)
            except asyncio.CancelledError:
                raise
            except BusUnavailable as exc:
                log.warning("ledger_bus_unavailable", error=str(exc))
                await asyncio.sleep(max(self._interval_s, 1.0))
            except Exception as exc:  # e.g. the database is down: keep the events on the bus and retry
                log.error("ledger_batch_failed", error=str(exc), error_type=type(exc).__name__)
                await asyncio.sleep(max(self._interval_s, 1.0))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    defaults = BusOptions()
    parser = argparse.ArgumentParser(prog="python -m billing.consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--nats-stream", default=defaults.stream)
    parser.add_argument("--nats-subject", default=defaults.subject)
    parser.add_argument("--durable", default=defaults.durable)
    parser.add_argument("--ack-wait", type=float, default=defaults.ack_wait_s)
    return parser.parse_args(argv)


async def serve(argv: list[str] | None = None) -> None:
    """Run the consumer process with settings from the environment."""
    from meterway.db import Database
    from meterway.settings import Settings

    args = _arguments(argv)
    settings = Settings.from_env()
    database = Database.connect(settings.database_url)
    options = BusOptions(stream=args.nats_stream, subject=args.nats_subject, durable=args.durable,
                         ack_wait_s=args.ack_wait)
    bus = open_bus(settings, database, options)
    consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, settings.billing.currency),
                              batch_size=settings.billing.consumer_batch,
                              interval_s=settings.billing.consumer_interval_s)
    log.info("ledger_consumer_started", bus=bus.name)
    try:
        await consumer.run()
    finally:
        await bus.close()
        await database.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m billing.consumer``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(argv))


if __name__ == "__main__":
    main()
