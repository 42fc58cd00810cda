"""Streaming chat clients for the serving benchmark: one SSE stream timed token by token, or N at once.

Both servers (meterway and the peer) speak OpenAI's streamed ``chat.completion.chunk`` events; the figures
come from the client's clock: time to first content, time of the last content, and the server's own
``usage.completion_tokens`` (asked for with ``stream_options.include_usage``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Target:
    """A server under test: where to send chat completions and as whom."""

    name: str
    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamResult:
    """What one streamed completion looked like from the client."""

    status: int
    ttft_s: float | None = None  # request sent -> first non-empty content delta
    total_s: float = 0.0  # request sent -> stream closed
    last_content_s: float | None = None
    completion_tokens: int = 0
    content_events: int = 0
    finish_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def decode_tok_s(self) -> float | None:
        """Tokens after the first divided by the time between first and last content (prefill excluded)."""
        if self.ttft_s is None or self.last_content_s is None or self.completion_tokens < 2:
            return None
        span = self.last_content_s - self.ttft_s
        return (self.completion_tokens - 1) / span if span > 0 else None

    @property
    def e2e_tok_s(self) -> float:
        """Completion tokens over the whole request time (what a caller sees)."""
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


def chat_body(target: Target, prompt: str, max_tokens: int) -> dict[str, Any]:
    """A greedy streamed chat request that asks for the usage chunk."""
    return {"model": target.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **target.extra_body}


async def stream_chat(client: httpx.AsyncClient, target: Target, prompt: str, max_tokens: int
                      ) -> StreamResult:
    """Send one streamed chat completion and time it."""
    started = time.perf_counter()
    async with client.stream("POST", f"{target.base_url}/v1/chat/completions", json=chat_body(
            target, prompt, max_tokens), headers=target.headers) as response:
        result = StreamResult(status=response.status_code, headers=dict(response.headers))
        if response.status_code != 200:
            result.error = (await response.aread()).decode(errors="replace")[:500]
            result.total_s = time.perf_counter() - started
            return result
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                _take_event(result, line[6:], time.perf_counter() - started)
    result.total_s = time.perf_counter() - started
    return result


def _take_event(result: StreamResult, data: str, at: float) -> None:
    if data.strip() == "[DONE]":
        return
    event = json.loads(data)
    if "error" in event:
        result.error = str(event["error"])
        return
    for choice in event.get("choices") or []:
        if (choice.get("delta") or {}).get("content"):
            result.content_events += 1
            result.last_content_s = at
            if result.ttft_s is None:
                result.ttft_s = at
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    if event.get("usage"):
        result.completion_tokens = int(event["usage"]["completion_tokens"])


def ttft_quantile(streams: list[StreamResult], q: float) -> float | None:
    """The median TTFT for ``q`` 0.5, else the nearest-rank ``q`` quantile; ``None`` without any TTFT."""
    values = sorted(s.ttft_s for s in streams if s.ttft_s is not None)
    if not values:
        return None
    return statistics.median(values) if q == 0.5 else values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class RoundResult:
    """N streams started together: aggregate throughput and the TTFT spread."""

    streams: list[StreamResult]
    wall_s: float

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.streams)

    @property
    def aggregate_tok_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ttft_p50_s(self) -> float | None:
        return ttft_quantile(self.streams, 0.5)

    @property
    def errors(self) -> list[str]:
        return [s.error or f"HTTP {s.status}" for s in self.streams if s.error or s.status != 200]


async def run_round(client: httpx.AsyncClient, target: Target, prompts: list[str], max_tokens: int
                    ) -> RoundResult:
    """Start one stream per prompt at the same moment; wall time runs until the last one ends."""
    started = time.perf_counter()
    streams = await asyncio.gather(*(stream_chat(client, target, p, max_tokens) for p in prompts))
    return RoundResult(list(streams), time.perf_counter() - started)


@dataclass
class SustainedResult:
    """N streams kept busy: every request that started while all N clients were sending."""

    streams: list[StreamResult]  # in the order they started
    window_s: float  # from the last client's first request to the deadline
    window_tokens: float  # completion tokens streamed inside the window, by every request

    @property
    def aggregate_tok_s(self) -> float:
        return self.window_tokens / self.window_s if self.window_s > 0 else 0.0

    @property
    def ttft_p50_s(self) -> float | None:
        return ttft_quantile(self.streams, 0.5)

    @property
    def ttft_p90_s(self) -> float | None:
        return ttft_quantile(self.streams, 0.9)


async def run_sustained(client: httpx.AsyncClient, target: Target, prompt: Callable[[int, int], str],
                        max_tokens: int, streams: int, stagger_s: float, window_s: float) -> SustainedResult:
    """N clients each sending requests back to back (client i's turn t asks ``prompt(i, t)``); client i
    starts ``i * stagger_s`` late.

    This is the steady state of N concurrent callers: arrivals spread over a request's lifetime, each joining
    N-1 streams already decoding. Kept: requests started between the last client's start and the deadline
    ``window_s`` later (at their start the other N-1 clients were all in flight); each runs to its end. The
    window's tokens count every request's tokens in proportion to the part of its streaming (first to last
    content) that fell inside the window.
    """
    n = streams
    start = time.perf_counter()
    window_open, deadline = start + (n - 1) * stagger_s, start + (n - 1) * stagger_s + window_s
    runs: list[tuple[float, StreamResult]] = []

    async def caller(i: int) -> None:
        await asyncio.sleep(i * stagger_s)
        turn = 0
        while (began := time.perf_counter()) < deadline:
            runs.append((began, await stream_chat(client, target, prompt(i, turn), max_tokens)))
            turn += 1

    await asyncio.gather(*(caller(i) for i in range(n)))
    runs.sort(key=lambda pair: pair[0])
    kept = [r for began, r in runs if began >= window_open - 1e-3]
    tokens = sum(_tokens_within(began, r, window_open, deadline) for began, r in runs)
    return SustainedResult(kept, window_s, tokens)


def _tokens_within(began: float, result: StreamResult, start: float, end: float) -> float:
    """A stream's completion tokens times the fraction of its streaming that fell in ``[start, end]``."""
    if result.ttft_s is None or result.last_content_s is None:
        return 0.0
    first, last = began + result.ttft_s, began + result.last_content_s
    if last <= first:
        return float(result.completion_tokens) if start <= first <= end else 0.0
    overlap = max(0.0, min(last, end) - max(first, start))
    return result.completion_tokens * overlap / (last - first)


def new_client(streams: int) -> httpx.AsyncClient:
    """An HTTP/1.1 client with a connection per stream and no read timeout worth hitting."""
    limits = httpx.Limits(max_connections=streams + 2, max_keepalive_connections=streams + 2)
    return httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), limits=limits)
