"""When to try a request again, and how long to wait first: shared by ``Client`` and ``AsyncClient``.

429 and 503 are retried for every method (the server refused the work, nothing ran); a failed connection
only for idempotent methods (a POST may have run). ``Retry-After`` (seconds) is honoured up to ``MAX_WAIT_S``;
without it the wait is exponential backoff with full jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_WAIT_S = 30.0
BASE_WAIT_S = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_retries`` further attempts after the first."""

    max_retries: int = 2
    base_wait_s: float = BASE_WAIT_S
    max_wait_s: float = MAX_WAIT_S

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when ``response`` is final."""
        if attempt >= self.max_retries or response.status_code not in RETRY_STATUSES:
            return None
        told = retry_after(response.headers)
        return min(told, self.max_wait_s) if told is not None else self.backoff(attempt)

    def after_failure(self, attempt: int, method: str) -> float | None:
        """Seconds to wait after a failed connection, or None when the failure is final."""
        if attempt >= self.max_retries or method.upper() not in IDEMPOTENT:
            return None
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, base * 2**attempt], capped."""
        return random.uniform(0, min(self.max_wait_s, self.base_wait_s * 2**attempt))


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (an HTTP date is not used by meterway and counts as absent)."""
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
