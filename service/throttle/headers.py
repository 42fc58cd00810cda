"""OpenAI's rate-limit headers: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.

For each of the two dimensions the header shows the most constraining window (the one with the fewest
units left) among the key's and its tenant's: requests per minute or per day, tokens per minute. A dimension
without any limit has no headers. Resets read like OpenAI's (Go durations): ``20ms``, ``1s``, ``1.5s``,
``6m0s``, ``1h0m0s``.
"""

from __future__ import annotations

from typing import NamedTuple


class WindowState(NamedTuple):
    """One rate window as a client should see it after (or instead of) this request."""

    dimension: str  # "requests" or "tokens"
    limit: int
    remaining: int
    reset_s: float


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes it: ``20ms`` below a second, else ``1h2m3.5s`` style."""
    millis = max(0, round(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_limit_headers(states: list[WindowState]) -> dict[str, str]:
    """The six headers (fewer when a dimension is unlimited), from the binding window of each dimension."""
    bindings: dict[str, WindowState] = {}
    for state in states:  # the first of the fewest units left, then of the latest reset
        best = bindings.get(state.dimension)
        if best is None or (state.remaining, -state.reset_s) < (best.remaining, -best.reset_s):
            bindings[state.dimension] = state
    headers: dict[str, str] = {}
    for dimension in ("requests", "tokens"):
        binding = bindings.get(dimension)
        if binding is None:
            continue
        headers[f"x-ratelimit-limit-{dimension}"] = str(binding.limit)
        headers[f"x-ratelimit-remaining-{dimension}"] = str(binding.remaining)
        headers[f"x-ratelimit-reset-{dimension}"] = format_reset(binding.reset_s)
    return headers
