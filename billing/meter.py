"""The request path's view of billing: record a usage event, durably, without waiting for the ledger.

``record`` publishes to the bus; when the bus fails the event goes to the gateway's spool instead (fsynced),
and a forwarder re-publishes it later. ``ensure_available`` is the pre-check before serving: it refuses
(``BillingUnavailable``, 503) only when the bus is down and the spool is full. See README.md.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from billing.bus import BusUnavailable
from meterway.errors import BillingUnavailable

if TYPE_CHECKING:
    from billing.bus import UsageBus
    from billing.events import UsageEvent
    from billing.spool import FileSpool

log = structlog.get_logger("billing.meter")
DEFAULT_SPOOL_LIMIT = 100_000


class Meter:
    """Records usage events for the gateway."""

    def __init__(self, bus: UsageBus, spool: FileSpool, *, spool_limit: int = DEFAULT_SPOOL_LIMIT) -> None:
        self.bus = bus
        self.spool = spool
        self._spool_limit = spool_limit
        self._bus_down = False  # set by a failed publish; cleared when the forwarder gets through

    @property
    def bus_down(self) -> bool:
        """Whether the last attempt to reach the bus failed."""
        return self._bus_down

    async def ensure_available(self) -> None:
        """Raise ``BillingUnavailable`` if a request served now could not be billed durably."""
        if self._bus_down and self.spool.count >= self._spool_limit:
            raise BillingUnavailable("usage billing is unavailable; retry shortly", retry_after=5.0)

    async def record(self, event: UsageEvent) -> None:
        """Make ``event`` durable (bus, or the spool while the bus is down); never waits for the ledger."""
        if not self._bus_down:
            try:
                await self.bus.publish(event)
                return
            except asyncio.CancelledError as exc:  # the client library's future, cancelled as its link drops
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
                self._spooling(exc, event)
            except Exception as exc:  # BusUnavailable, or a failure the bus client does not declare: keep it
                self._spooling(exc, event)
        try:
            await self.spool.append(event)
        except OSError as exc:  # neither bus nor disk: the one case an event cannot be kept
            log.critical("usage_event_not_durable", request_id=event.request_id, error=str(exc))
            raise BillingUnavailable("usage could not be recorded") from exc

    def _spooling(self, exc: BaseException, event: UsageEvent) -> None:
        self._bus_down = True
        log.warning("usage_bus_down_spooling", error=str(exc) or type(exc).__name__, request_id=event.request_id)

    async def forward_spool(self) -> int:
        """Re-publish spooled events; clears ``bus_down`` once the bus takes them. Returns events sent."""
        try:
            sent = await self.spool.forward(self.bus)
        except BusUnavailable:
            self._bus_down = True
            return 0
        self._bus_down = False
        if sent:
            log.info("usage_spool_forwarded", events=sent)
        return sent

    async def run_forwarder(self, interval_s: float = 1.0) -> None:
        """Background task: forward the spool every ``interval_s``."""
        while True:
            try:
                await self.forward_spool()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a corrupt spool file must not stop forwarding of the others
                log.error("usage_spool_forward_failed", error=str(exc))
            await asyncio.sleep(interval_s)
