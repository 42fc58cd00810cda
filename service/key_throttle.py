"""The request path's throttle: a principal's key limits checked and reserved in the shared store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.throttle import Admission, KeyLimits, Subject, Throttle

if TYPE_CHECKING:
    from decimal import Decimal

    from service.auth import Principal


class KeyThrottle:
    """Adapts ``service.throttle`` to principals; the platform admin is never throttled."""

    def __init__(self, throttle: Throttle) -> None:
        self._throttle = throttle

    async def admit(self, principal: Principal, tokens: int, cost: Decimal) -> Admission:
        limits = principal.limits if isinstance(principal.limits, KeyLimits) else KeyLimits()
        subject = Subject(principal.billing_key, principal.billing_tenant)
        return await self._throttle.admit(subject, limits, tokens, cost)

    async def start(self) -> None:
        await self._throttle.start()

    async def close(self) -> None:
        await self._throttle.close()
