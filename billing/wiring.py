"""Billing's composition: ``build_billing(settings, database)`` for ``create_app`` and the CLI.

It builds the bus, meter, price book, reports, period closer and Stripe exporter and runs the background tasks
(ledger consumer, spool forwarder, scheduled export). Its routes are registered by ``service/app.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from billing.buses import open_bus
from billing.consumer import LedgerConsumer
from billing.ledger import LedgerWriter
from billing.meter import Meter
from billing.periods import PeriodCloser
from billing.prices import PriceBook
from billing.reports import UsageReports
from billing.spool import FileSpool
from billing.stripe_export import StripeExporter, link_stripe_customer
from billing.stripe_sink import MeterEventSink, StripeMeterEventSink
from meterway.failures import tolerated

if TYPE_CHECKING:
    from collections.abc import Iterable

    from billing.bus import BusOptions, UsageBus
    from meterway.db import Database
    from meterway.settings import Settings
    from models.catalog import ModelSpec

log = structlog.get_logger("billing")


@dataclass
class Billing:
    """Every billing service of one app, and the tasks that keep the ledger moving."""

    settings: Settings
    database: Database
    bus: UsageBus
    meter: Meter
    prices: PriceBook
    reports: UsageReports
    periods: PeriodCloser
    ledger: LedgerWriter
    exporter: StripeExporter | None
    run_consumer: bool = True
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list, repr=False)

    @property
    def consumer(self) -> LedgerConsumer:
        """A consumer over this app's bus (the server runs one; the CLI and tests drain with it)."""
        return LedgerConsumer(self.bus, self.ledger, batch_size=self.settings.billing.consumer_batch,
                              interval_s=self.settings.billing.consumer_interval_s)

    async def start(self, catalog: Iterable[ModelSpec] = ()) -> None:
        """Seed catalog prices, then start the consumer, the spool forwarder and the scheduled export."""
        await self.prices.seed(catalog)
        self._spawn(self.meter.run_forwarder(), "spool-forwarder")
        if self.run_consumer:
            self._spawn(self.consumer.run(), "ledger-consumer")
        interval = self.settings.billing.stripe_export_interval_s
        if self.exporter is not None and interval > 0:
            self._spawn(_every(interval, self.exporter.export), "stripe-export")

    def _spawn(self, work: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=f"billing:{name}"))

    async def stop(self) -> None:
        """Stop the tasks, forward what the spool can, close the bus."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError), tolerated(f"billing.stop.{task.get_name()}"):
                await task
        self._tasks.clear()
        # What cannot be forwarded now stays in the fsynced spool; the next start forwards it.
        with tolerated("billing.stop.forward_spool"):
            await self.meter.forward_spool()
        await self.bus.close()

    async def backlog(self) -> int:
        """Usage events not yet in the ledger: on the bus plus in this gateway's spool."""
        return await self.bus.pending() + self.meter.spool.backlog()

    async def link_stripe_customer(self, tenant: str, customer_id: str) -> None:
        """Link a tenant to its Stripe customer for the export."""
        await link_stripe_customer(self.database.sessions, tenant, customer_id)


async def _every(interval_s: float, job: Any) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception as exc:  # Stripe down: the pending records wait for the next run
            log.warning("scheduled_job_failed", error=str(exc))


def build_billing(settings: Settings, database: Database, *, options: BusOptions | None = None,
                  sink: MeterEventSink | None = None, run_consumer: bool | None = None) -> Billing:
    """Build (without starting) billing for an app; ``sink`` replaces Stripe (e.g. in tests).

    ``run_consumer`` defaults to ``METERWAY_LEDGER_IN_SERVER``.
    """
    bus = open_bus(settings, database, options)
    meter = Meter(bus, FileSpool(settings.home / "billing-spool"))
    billing_settings = settings.billing
    if sink is None and billing_settings.stripe_api_key:
        sink = StripeMeterEventSink(billing_settings.stripe_api_key, billing_settings.stripe_api_base)
    exporter = StripeExporter(database.sessions, sink, billing_settings.stripe_meter_event,
                              billing_settings.stripe_instance_meter_event) if sink else None
    return Billing(settings, database, bus, meter, PriceBook(database.sessions, billing_settings.currency),
                   UsageReports(database.sessions, billing_settings.currency), PeriodCloser(database.sessions),
                   LedgerWriter(database.sessions, billing_settings.currency), exporter,
                   billing_settings.consumer_in_server if run_consumer is None else run_consumer)
