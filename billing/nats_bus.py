"""The production bus: NATS JetStream, ``Nats-Msg-Id`` = request id, a durable pull consumer, explicit acks.

``publish`` returns once JetStream acked the message (it is stored); a re-publish of the same request id
inside the stream's duplicate window is dropped by the server. The consumer acks after the ledger commit;
whatever is not acked within ``ack_wait_s`` is redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from billing.bus import Batch, BusOptions, BusUnavailable, decode_event, encode_event

if TYPE_CHECKING:
    from billing.events import UsageEvent
    from meterway.db import Database
    from meterway.settings import Settings

log = structlog.get_logger("billing.nats")
DUPLICATE_WINDOW_S = 24 * 3600  # covers any gateway spool replay within a day
CONNECT_TIMEOUT_S = 2


class NatsJetStreamBus:
    """``UsageBus`` over a JetStream stream; connects lazily so that a down NATS never blocks startup."""

    name = "nats"

    def __init__(self, url: str, options: BusOptions) -> None:
        self._url = url
        self._options = options
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._lock = asyncio.Lock()

    async def _jetstream(self) -> Any:
        async with self._lock:
            if self._js is not None and self._nc.is_connected:
                return self._js
            await self._drop()
            import nats

            try:
                # nats-py retries a first connect forever with max_reconnect_attempts=-1: bound it here.
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self._nc = await nats.connect(
                        self._url, connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=True,
                        max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=_log_error)
                self._js = self._nc.jetstream()
                await self._ensure_stream()
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                await self._drop()
                raise BusUnavailable(f"NATS at {self._url} unreachable: {exc}") from exc
            return self._js

    async def _ensure_stream(self) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._js.stream_info(self._options.stream)
        except NotFoundError:
            # Work-queue retention: a message is deleted once the ledger consumer acked it.
            await self._js.add_stream(name=self._options.stream, subjects=[self._options.subject],
                                      duplicate_window=DUPLICATE_WINDOW_S, storage="file",
                                      retention="workqueue")

    async def publish(self, event: UsageEvent) -> None:
        """Store the event in JetStream (acked), de-duplicated by request id."""
        import nats

        js = await self._jetstream()
        try:
            await js.publish(self._options.subject, encode_event(event),
                             timeout=self._options.publish_timeout_s,
                             headers={"Nats-Msg-Id": event.request_id})
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"JetStream publish failed: {exc}") from exc

    async def _subscription(self) -> Any:
        if self._sub is None:
            from nats.js.api import AckPolicy, ConsumerConfig

            js = await self._jetstream()
            config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self._options.ack_wait_s,
                                    max_ack_pending=-1)
            self._sub = await js.pull_subscribe(self._options.subject, durable=self._options.durable,
                                                stream=self._options.stream, config=config)
        return self._sub

    async def fetch(self, max_events: int, timeout_s: float) -> Batch:
        """Pull up to ``max_events``; undecodable messages are terminated (logged) rather than retried."""
        import nats

        sub = await self._subscription()
        try:
            messages = await sub.fetch(max_events, timeout=max(timeout_s, 0.05))
        except (TimeoutError, nats.errors.TimeoutError):
            messages = []
        events, good = [], []
        for message in messages:
            try:
                events.append(decode_event(message.data))
                good.append(message)
            except Exception:  # a poison message must not stall the ledger
                log.error("usage_event_undecodable", subject=message.subject)
                await message.term()

        async def ack() -> None:
            await asyncio.gather(*(message.ack() for message in good))
            if good:
                await self._nc.flush()

        return Batch(events, ack)

    async def pending(self) -> int:
        """Events the ledger consumer has not acked yet (unknown consumer: everything in the stream)."""
        from nats.js.errors import NotFoundError

        js = await self._jetstream()
        try:
            info = await js.consumer_info(self._options.stream, self._options.durable)
        except NotFoundError:
            return int((await js.stream_info(self._options.stream)).state.messages)
        return int(info.num_pending) + int(info.num_ack_pending)

    async def _drop(self) -> None:
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone anyway
                await nc.close()

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            await self._drop()


async def _log_error(exc: Exception) -> None:
    log.warning("nats_error", error=str(exc))


def open_nats_bus(settings: Settings, database: Database, options: BusOptions) -> NatsJetStreamBus:
    """Registry factory for the NATS bus."""
    return NatsJetStreamBus(settings.billing.nats_url, options)
