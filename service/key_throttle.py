"""The request path's throttle: a principal's key limits, and the deployment's own, checked and reserved in the
shared store.

A request to an endpoint's deployment is admitted twice: against the caller's key (its RPM, TPM, budget...)
and against the deployment (its RPM, TPM and concurrency, under the endpoint's concurrency ceiling). A
refusal of the second gives the first back at once. The response's ``x-ratelimit-*`` headers are the key's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.throttle import Admission, KeyLimits, Subject, Throttle

if TYPE_CHECKING:
    from decimal import Decimal

    from service.auth import Principal


@dataclass(frozen=True)
class Capacity:
    """A deployment's own limits: the subject its counters are kept under and the limits on them."""

    subject: Subject
    limits: KeyLimits

    @classmethod
    def of(cls, endpoint: str, deployment: str, rpm: int | None, tpm: int | None, max_concurrency: int | None,
           endpoint_concurrency: int | None) -> Capacity | None:
        limits = KeyLimits(rpm=rpm, tpm=tpm, max_concurrency=max_concurrency,
                           tenant=KeyLimits(max_concurrency=endpoint_concurrency))
        if limits.unlimited:
            return None
        return cls(Subject(f"{endpoint}/{deployment}", endpoint, ("deployment", "endpoint")), limits)


class _Both:
    """The key's and the deployment's admissions of one request, settled and released together."""

    def __init__(self, key: Admission, deployment: Admission) -> None:
        self._key, self._deployment = key, deployment

    @property
    def headers(self) -> dict[str, str]:
        return self._key.headers

    async def settle(self, tokens_used: int, cost_used: Decimal) -> None:
        try:
            await self._key.settle(tokens_used, cost_used)
        finally:
            await self._deployment.settle(tokens_used, cost_used)

    async def release(self) -> None:
        try:
            await self._key.release()
        finally:
            await self._deployment.release()


class KeyThrottle:
    """Adapts ``service.throttle`` to principals; the platform admin is never throttled by key limits."""

    def __init__(self, throttle: Throttle) -> None:
        self._throttle = throttle

    async def admit(self, principal: Principal, tokens: int, cost: Decimal,
                    capacity: Capacity | None = None) -> Admission | _Both:
        limits = principal.limits if isinstance(principal.limits, KeyLimits) else KeyLimits()
        subject = Subject(principal.billing_key, principal.billing_tenant)
        admitted = await self._throttle.admit(subject, limits, tokens, cost)
        if capacity is None:
            return admitted
        try:
            deployment = await self._throttle.admit(capacity.subject, capacity.limits, tokens, cost)
        except BaseException:
            await admitted.release()
            raise
        return _Both(admitted, deployment)

    async def start(self) -> None:
        await self._throttle.start()

    async def close(self) -> None:
        await self._throttle.close()
