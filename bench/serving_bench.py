"""Serving benchmark: meterway vs ``transformers serve --continuous-batching`` on SmolLM2-135M, in one run.

Both servers are real processes on this machine, called over HTTP with streamed chat completions (meterway
with a tenant key: auth, throttling and metering on). Measured, for each: single-stream tok/s and time to
first token (median of a few runs), aggregate tok/s and TTFT p50 at N concurrent streams; for meterway also
the cold start (fresh server, model unloaded → first token) and single-stream decode against the memory
bandwidth bound. Prints the machine, a table and the ratios against docs' targets, and writes JSON under
``bench/results/``. Run::

    .venv/bin/python -m bench.serving_bench [--tokens 64] [--streams 8] [--single-runs 5] [--rounds 3]
                                            [--cold-runs 2] [--no-peer] [--store var/test-store]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bandwidth, machine, report
from bench.meterway_server import MeterwayServer, free_port
from bench.peer import PeerServer, ensure_peer_venv
from bench.sse_client import RoundResult, StreamResult, Target, new_client, run_round, stream_chat

REPO = Path(__file__).resolve().parent.parent
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

    def prompts(self) -> list[str]:
        return [PROMPTS[i % len(PROMPTS)] for i in range(self.streams)]


async def warm_up(target: Target, plan: Plan) -> None:
    """Two single streams and one short concurrent round, so that lazy paths are taken before timing."""
    async with new_client(plan.streams) as client:
        for _ in range(2):
            _check(await stream_chat(client, target, SINGLE_PROMPT, plan.tokens), target)
        for stream in (await run_round(client, target, plan.prompts(), 8)).streams:
            _check(stream, target)


async def measure_warm(target: Target, plan: Plan) -> dict[str, Any]:
    """Single-stream runs one after another, then concurrent rounds; medians over runs."""
    async with new_client(plan.streams) as client:
        singles = [_check(await stream_chat(client, target, SINGLE_PROMPT, plan.tokens), target)
                   for _ in range(plan.single_runs)]
        rounds: list[RoundResult] = []
        for _ in range(plan.rounds):
            result = await run_round(client, target, plan.prompts(), plan.tokens)
            for stream in result.streams:
                _check(stream, target)
            rounds.append(result)
    return summarize(singles, rounds)


def _check(result: StreamResult, target: Target) -> StreamResult:
    if result.error or result.status != 200:
        raise RuntimeError(f"{target.name}: request failed: HTTP {result.status}: {result.error}")
    return result


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(singles: list[StreamResult], rounds: list[RoundResult]) -> dict[str, Any]:
    """The figures of one server: medians over runs, and every raw run for the JSON."""
    return {
        "single": {
            "ttft_s": _median([s.ttft_s for s in singles]),
            "e2e_tok_s": _median([s.e2e_tok_s for s in singles]),
            "decode_tok_s": _median([s.decode_tok_s for s in singles]),
            "completion_tokens": [s.completion_tokens for s in singles],
            "runs": [_stream_json(s) for s in singles],
        },
        "concurrent": {
            "aggregate_tok_s": _median([r.aggregate_tok_s for r in rounds]),
            "ttft_p50_s": _median([r.ttft_p50_s for r in rounds]),
            "completion_tokens": [r.completion_tokens for r in rounds],
            "rounds": [{"wall_s": r.wall_s, "aggregate_tok_s": r.aggregate_tok_s, "ttft_p50_s": r.ttft_p50_s,
                        "streams": [_stream_json(s) for s in r.streams]} for r in rounds],
        },
    }


def _stream_json(s: StreamResult) -> dict[str, Any]:
    return {"ttft_s": s.ttft_s, "total_s": s.total_s, "completion_tokens": s.completion_tokens,
            "content_events": s.content_events, "finish_reason": s.finish_reason,
            "decode_tok_s": s.decode_tok_s}


async def cold_request(server: MeterwayServer, target: Target, plan: Plan) -> dict[str, Any]:
    """Time one request against a model the fresh server has not loaded: send → first token."""
    key = target.headers["Authorization"].removeprefix("Bearer ")
    state_before = await asyncio.to_thread(server.model_state, target.model, key)
    async with new_client(1) as client:
        result = _check(await stream_chat(client, target, SINGLE_PROMPT, plan.tokens), target)
    return {"state_before": state_before, "header_state": result.headers.get("x-meterway-model-state"),
            "ttft_s": result.ttft_s, "completion_tokens": result.completion_tokens}


def bench_meterway(store: Path, model: str, plan: Plan, work: Path) -> dict[str, Any]:
    """Cold starts on fresh servers, then warm figures on the last one."""
    colds: list[dict[str, Any]] = []
    server: MeterwayServer | None = None
    for attempt in range(plan.cold_runs):
        server = MeterwayServer(work / f"meterway-{attempt}", store, free_port(), env=_meterway_env(plan))
        startup_s = server.start()
        key = server.create_key()
        target = Target("meterway", server.url, model, {"Authorization": f"Bearer {key}"})
        cold = asyncio.run(cold_request(server, target, plan))
        cold["server_startup_s"] = startup_s
        colds.append(cold)
        print(f"meterway cold start {attempt + 1}: {cold}", flush=True)
        if attempt < plan.cold_runs - 1:
            server.stop()
    assert server is not None
    try:
        asyncio.run(warm_up(target, plan))
        figures = asyncio.run(measure_warm(target, plan))
    finally:
        server.stop()
    figures["cold"] = {"ttft_s": _median([c["ttft_s"] for c in colds]), "runs": colds,
                       "launcher": server.launcher}
    return figures


def _meterway_env(plan: Plan) -> dict[str, str]:
    # The pool sets torch's thread count itself (METERWAY_POOL_THREADS), overriding OMP_NUM_THREADS.
    return {**plan.env, **({"METERWAY_POOL_THREADS": str(plan.threads)} if plan.threads else {})}


def bench_peer(store: Path, model: str, plan: Plan, work: Path) -> dict[str, Any]:
    """Install (if needed), start and measure ``transformers serve --continuous-batching``."""
    versions = ensure_peer_venv(work / "peer-install.log")
    peer_env = {**plan.env, **({"OMP_NUM_THREADS": str(plan.threads)} if plan.threads else {})}
    peer = PeerServer(store / model, free_port(), work / "peer.log", env=peer_env)
    print(f"starting the peer: {' '.join(peer.command())}", flush=True)
    startup_s = peer.start()
    target = Target("peer", peer.url, peer.model)
    try:
        asyncio.run(warm_up(target, plan))
        figures = asyncio.run(measure_warm(target, plan))
    finally:
        peer.stop()
    figures.update(versions=versions, startup_s=startup_s, command=peer.command())
    return figures


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--single-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in both servers (0: default)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for both servers, e.g. OMP_WAIT_POLICY=PASSIVE (repeatable)")
    parser.add_argument("--no-peer", action="store_true", help="benchmark meterway alone")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    env = dict(item.split("=", 1) for item in args.env)
    plan = Plan(args.tokens, args.streams, args.single_runs, args.rounds, args.cold_runs, env, args.threads)
    store = args.store.resolve()
    results: dict[str, Any] = {"plan": plan.__dict__, "model": args.model, "store": str(store),
                               "machine": machine.describe(), "started": datetime.now(UTC).isoformat()}
    print(report.machine_lines(results["machine"]), flush=True)
    print(f"plan: {plan}", flush=True)
    weights = store / args.model / "model.safetensors"
    bw = bandwidth.measure()
    results["bound"] = {"bandwidth_bytes_s": bw.best_bytes_s, "numpy_bytes_s": bw.numpy_bytes_s,
                        "torch_bytes_s": bw.torch_bytes_s, "weights_bytes": weights.stat().st_size,
                        "bound_tok_s": bw.best_bytes_s / weights.stat().st_size}
    print(f"read bandwidth: {bw.best_bytes_s / 1e9:.1f} GB/s → bound "
          f"{results['bound']['bound_tok_s']:.1f} tok/s", flush=True)
    # Server state and logs stay beside the JSON (git-ignored), to look into a surprising figure.
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())  # names this run's files
    work = args.results / f"serving-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    print(f"server logs under {work}", flush=True)
    results["meterway"] = bench_meterway(store, args.model, plan, work)
    if not args.no_peer:
        try:
            results["peer"] = bench_peer(store, args.model, plan, work)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:  # meterway's figures stand
            results["peer_error"] = str(exc)
            print(f"the peer could not be measured: {exc}", flush=True)
    results["finished"] = datetime.now(UTC).isoformat()
    results["machine"]["load_average_end"] = os.getloadavg()
    results["verdicts"] = report.verdicts(results)
    print(report.table(results), flush=True)
    path = _write(args.results / f"serving-{stamp}.json", results)
    print(f"\nresults written to {path}")


def _write(path: Path, results: dict[str, Any]) -> Path:
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


if __name__ == "__main__":
    main()
