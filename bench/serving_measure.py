"""What the serving benchmark measures on running servers: warm-up, single streams, concurrent rounds.

The servers are measured interleaved — one single stream on each in turn, then one concurrent round on each
in turn, the order flipping every repetition — so that a neighbour's load on this shared machine falls on
both sides of a ratio instead of on whichever server happened to run while it lasted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.sse_client import (
    RoundResult,
    StreamResult,
    SustainedResult,
    Target,
    new_client,
    run_round,
    run_sustained,
    stream_chat,
)

if TYPE_CHECKING:
    import httpx

SINGLE_PROMPT = "Write a long story about a dragon."
PROMPTS = [
    "Write a long story about a dragon.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in Marrakesh.",
    "List twenty uses for a paperclip and explain each one.",
    "Tell me about the history of the Roman Empire.",
    "Write a poem about the sea, then explain its meaning.",
    "Explain how photosynthesis works to a ten year old.",
    "Describe your perfect day from morning to night.",
]


@dataclass(frozen=True)
class Plan:
    """What to measure, from the command line."""

    tokens: int
    streams: int
    single_runs: int
    rounds: int
    cold_runs: int
    env: dict[str, str]  # for both servers' processes (e.g. OMP_WAIT_POLICY)
    threads: int  # torch threads in both servers; 0 = their defaults (all cores)
    distinct: bool = False  # every measured request asks something new: only the system prompt is shared
    sustained_s: float = 0.0  # the sustained phase's measuring window per server; 0 = no sustained phase

    def single_prompt(self, run: int) -> str:
        """The single-stream prompt of measured run ``run``."""
        return f"Request {run}. {SINGLE_PROMPT}" if self.distinct else SINGLE_PROMPT

    def prompts(self, round_: int = 0) -> list[str]:
        """The prompts of one concurrent round."""
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(self.streams)]
        return [f"Request {round_}-{i}. {p}" for i, p in enumerate(prompts)] if self.distinct else prompts

    def sustained_prompt(self, stream: int, turn: int) -> str:
        """The prompt of one sustained-phase request: the rounds' prompt of that stream, or a new one."""
        prompt = PROMPTS[stream % len(PROMPTS)]
        return f"Request s{turn}-{stream}. {prompt}" if self.distinct else prompt


def check(result: StreamResult, target: Target) -> StreamResult:
    """The result, or an error naming the server when the request failed."""
    if result.error or result.status != 200:
        raise RuntimeError(f"{target.name}: request failed: HTTP {result.status}: {result.error}")
    return result


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


async def warm_up(target: Target, plan: Plan) -> None:
    """Two single streams and one short concurrent round, so that lazy paths are taken before timing."""
    async with new_client(plan.streams) as client:
        for _ in range(2):
            check(await stream_chat(client, target, SINGLE_PROMPT, plan.tokens), target)
        for stream in (await run_round(client, target, plan.prompts(), 8)).streams:
            check(stream, target)


async def measure(targets: list[Target], plan: Plan) -> dict[str, dict[str, Any]]:
    """Single streams, then concurrent rounds, taking turns between ``targets``; medians per target."""
    singles: dict[str, list[StreamResult]] = {t.name: [] for t in targets}
    rounds: dict[str, list[RoundResult]] = {t.name: [] for t in targets}
    async with new_client(plan.streams) as client:
        for run in range(plan.single_runs):
            for target in targets if run % 2 == 0 else targets[::-1]:
                single = check(await stream_chat(client, target, plan.single_prompt(run), plan.tokens), target)
                print(f"{target.name} single: {single.completion_tokens} tokens, TTFT {single.ttft_s:.3f} s, "
                      f"{single.e2e_tok_s:.2f} tok/s", flush=True)
                singles[target.name].append(single)
        for run in range(plan.rounds):
            for target in targets if run % 2 == 0 else targets[::-1]:
                result = await run_round(client, target, plan.prompts(run + 1), plan.tokens)
                for stream in result.streams:
                    check(stream, target)
                print(f"{target.name} {plan.streams} streams: {result.completion_tokens} tokens in "
                      f"{result.wall_s:.1f} s, {result.aggregate_tok_s:.2f} tok/s, "
                      f"TTFT p50 {result.ttft_p50_s:.3f} s", flush=True)
                rounds[target.name].append(result)
        sustained = {t.name: await measure_sustained(client, t, plan, rounds[t.name]) for t in targets}
    return {t.name: {**summarize(singles[t.name], rounds[t.name]), "sustained": sustained[t.name]}
            for t in targets}


async def measure_sustained(client: httpx.AsyncClient, target: Target, plan: Plan, rounds: list[RoundResult]
                            ) -> dict[str, Any] | None:
    """TTFT with N streams kept busy, arrivals spread evenly over one request's lifetime at N streams (the
    target's own median round time ÷ N), so that each arrival joins N-1 streams already decoding."""
    walls = [r.wall_s for r in rounds]
    if not plan.sustained_s or not walls:
        return None
    stagger = statistics.median(walls) / plan.streams
    result = await run_sustained(client, target, plan.sustained_prompt, plan.tokens, plan.streams, stagger,
                                 plan.sustained_s)
    for stream in result.streams:
        check(stream, target)
    print(f"{target.name} sustained {plan.streams} streams: {len(result.streams)} requests, TTFT p50 "
          f"{result.ttft_p50_s:.3f} s, p90 {result.ttft_p90_s:.3f} s, {result.aggregate_tok_s:.2f} tok/s",
          flush=True)
    return _sustained_json(result, stagger)


def _sustained_json(result: SustainedResult, stagger_s: float) -> dict[str, Any]:
    return {"ttft_p50_s": result.ttft_p50_s, "ttft_p90_s": result.ttft_p90_s, "requests": len(result.streams),
            "aggregate_tok_s": result.aggregate_tok_s, "window_tokens": result.window_tokens,
            "stagger_s": stagger_s, "window_s": result.window_s,
            "streams": [_stream_json(s) for s in result.streams]}


def summarize(singles: list[StreamResult], rounds: list[RoundResult]) -> dict[str, Any]:
    """The figures of one server: medians over runs, and every raw run for the JSON."""
    return {
        "single": {
            "ttft_s": median([s.ttft_s for s in singles]),
            "e2e_tok_s": median([s.e2e_tok_s for s in singles]),
            "decode_tok_s": median([s.decode_tok_s for s in singles]),
            "completion_tokens": [s.completion_tokens for s in singles],
            "runs": [_stream_json(s) for s in singles],
        },
        "concurrent": {
            "aggregate_tok_s": median([r.aggregate_tok_s for r in rounds]),
            "ttft_p50_s": median([r.ttft_p50_s for r in rounds]),
            "completion_tokens": [r.completion_tokens for r in rounds],
            "rounds": [{"wall_s": r.wall_s, "aggregate_tok_s": r.aggregate_tok_s, "ttft_p50_s": r.ttft_p50_s,
                        "streams": [_stream_json(s) for s in r.streams]} for r in rounds],
        },
    }


def _stream_json(s: StreamResult) -> dict[str, Any]:
    return {"ttft_s": s.ttft_s, "total_s": s.total_s, "completion_tokens": s.completion_tokens,
            "content_events": s.content_events, "finish_reason": s.finish_reason,
            "decode_tok_s": s.decode_tok_s}


async def cold_request(target: Target, plan: Plan) -> StreamResult:
    """One request against a model the server has not loaded yet; its TTFT is the cold start."""
    async with new_client(1) as client:
        return check(await stream_chat(client, target, SINGLE_PROMPT, plan.tokens), target)
