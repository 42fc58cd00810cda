"""Where meter events go: the ``MeterEventSink`` interface and its Stripe implementation (official SDK)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


class DuplicateMeterEvent(Exception):
    """Stripe already holds an event with this identifier: an earlier attempt arrived."""


@dataclass(frozen=True)
class MeterEvent:
    """One meter event as sent: ``value`` is a whole number of tokens."""

    event_name: str
    identifier: str
    stripe_customer_id: str
    value: int
    timestamp: int
    model: str
    token_type: str


class MeterEventSink(Protocol):
    """Sends one meter event; raises ``DuplicateMeterEvent`` when the identifier was already taken."""

    async def send(self, event: MeterEvent) -> None: ...


class StripeMeterEventSink:
    """``billing.MeterEvent.create`` through ``stripe.StripeClient`` (no module-level SDK globals)."""

    def __init__(self, api_key: str, api_base: str = "", *, max_network_retries: int = 2) -> None:
        import stripe

        addresses = {"api": api_base} if api_base else None
        self._client = stripe.StripeClient(api_key, base_addresses=addresses,  # type: ignore[arg-type]
                                           max_network_retries=max_network_retries)

    async def send(self, event: MeterEvent) -> None:
        """Create the meter event (the SDK is synchronous; it runs in a thread)."""
        await asyncio.to_thread(self._send, event)

    def _send(self, event: MeterEvent) -> None:
        import stripe

        params = {"event_name": event.event_name, "identifier": event.identifier,
                  "timestamp": event.timestamp,
                  "payload": {"stripe_customer_id": event.stripe_customer_id, "value": str(event.value),
                              "model": event.model, "token_type": event.token_type}}
        try:
            self._client.v1.billing.meter_events.create(params=params)  # type: ignore[arg-type]
        except stripe.InvalidRequestError as exc:
            if exc.param == "identifier" or exc.code == "resource_already_exists":
                raise DuplicateMeterEvent(event.identifier) from exc
            raise
