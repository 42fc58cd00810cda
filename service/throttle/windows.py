"""Time arithmetic of the limits: sliding-window counters and calendar budget periods.

Rate limits use the sliding-window counter of the ``limits`` library (``SlidingWindowCounterRateLimiter``):
one counter per fixed window, and a request fits when ``previous * weight + current + amount <= limit``,
where ``weight`` is the share of the previous window still inside the sliding one. Since the current counter
alone never passes the limit, every fixed window admits at most the limit; since the previous window decays
linearly, a key driven above its limit is still admitted close to its limit in every window (no burst at the
window edge, no starvation). Budgets count per calendar period (UTC day or month).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(slots=True)  # not frozen: made for every admission, and a frozen dataclass is slow to make
class Window:
    """Where ``now`` falls in a sliding window of ``length`` seconds (a value: never changed once made)."""

    length: int
    index: int
    elapsed: float

    @classmethod
    def at(cls, now: float, length: int) -> Window:
        index = math.floor(now / length)
        return cls(length, index, now - index * length)

    @property
    def previous_weight(self) -> float:
        """Share of the previous fixed window that still counts."""
        return (self.length - self.elapsed) / self.length

    @property
    def until_next(self) -> float:
        return self.length - self.elapsed


def wait_to_fit(limit: int, amount: int, window: Window, current: int, previous: int) -> float | None:
    """Seconds until ``amount`` fits, if nothing more is admitted; ``None`` if it never can."""
    if amount > limit:
        return None
    if current + amount <= limit:
        # The previous window's share decays until the request fits within this window.
        if previous <= 0:
            return 0.0
        moment = window.length - (limit - current - amount) * window.length / previous
        return max(0.0, moment - window.elapsed)
    # Only in the next window, where today's count becomes the decaying previous one.
    moment = window.length - (limit - amount) * window.length / current
    return window.until_next + max(0.0, moment)


def budget_period(now: float, period: str) -> tuple[str, float]:
    """The calendar period (UTC) that ``now`` falls in, as ``(id, seconds until it ends)``."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end_ts = start.timestamp() + 86_400
        return start.strftime("%Y-%m-%d"), end_ts - now
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
        start.replace(month=start.month + 1)
    return start.strftime("%Y-%m"), following.timestamp() - now
