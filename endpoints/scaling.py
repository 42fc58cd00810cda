"""Autoscaling of a dedicated deployment: how many instances it should have, given its requests in flight.

Pure and clock-driven, so that the policy reads (and is tested) in one place: scale out at once to
``ceil(in_flight / target_concurrency)``, bounded by ``min_instances`` and ``max_instances``; scale in only
after the load has stayed low for ``cooldown_s`` since the last change or the last time it was needed, one
instance at a time. A fixed ``instance_count`` is simply that count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TARGET_CONCURRENCY, DEFAULT_COOLDOWN_S = 2, 60


@dataclass(frozen=True)
class Bounds:
    """A deployment's instance settings (``fixed`` set: no autoscaling)."""

    fixed: int | None
    low: int = 1
    high: int = 1
    target: int = DEFAULT_TARGET_CONCURRENCY
    cooldown_s: float = DEFAULT_COOLDOWN_S

    @property
    def initial(self) -> int:
        return self.fixed if self.fixed is not None else self.low


@dataclass
class Autoscaler:
    """One deployment's scaling decisions; ``now`` is seconds on a monotonic clock."""

    bounds: Bounds
    last_change: float = float("-inf")
    last_needed: float = float("-inf")  # the last time the load needed the instances it had

    def desired(self, current: int, in_flight: int, now: float) -> int:
        """How many instances the deployment should have now."""
        b = self.bounds
        if b.fixed is not None:
            return b.fixed
        current = min(max(current, b.low), b.high)
        wanted = min(max(math.ceil(in_flight / b.target), b.low), b.high)
        if wanted >= current:
            self.last_needed = now
            return wanted
        if now - max(self.last_change, self.last_needed) >= b.cooldown_s:
            return current - 1
        return current

    def changed(self, now: float) -> None:
        """The deployment was scaled: the cool-down starts again."""
        self.last_change = now
