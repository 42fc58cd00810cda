"""Serving benchmark: meterway vs ``transformers serve --continuous-batching`` on SmolLM2-135M, in one run.

Both servers are real processes on this machine, up at the same time and measured in turns (see
``bench.serving_measure``), called over HTTP with streamed chat completions (meterway with a tenant key: auth,
throttling and metering on). Measured, for each: single-stream tok/s and time to first token (median of a few
runs); aggregate tok/s and TTFT p50 at N concurrent streams sent at once (a burst); TTFT p50 with N streams
kept busy (the sustained phase: ``bench.serving_measure.measure_sustained``); for meterway also the cold start
(a server up for 15 s, model unloaded → first token) and single-stream decode against the memory bandwidth
bound. Prints the machine, a table and the ratios against the targets of docs/performance.md, and writes JSON
(and the servers' logs) under ``bench/results/``. Run::

    .venv/bin/python -m bench.serving_bench [--tokens 64] [--streams 8] [--single-runs 5] [--rounds 3]
                                            [--cold-runs 3] [--threads N] [--env NAME=VALUE]...
                                            [--no-peer] [--distinct-prompts] [--sustained-seconds 20]
                                            [--store var/test-store]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bandwidth, machine, report
from bench.meterway_server import MeterwayServer, free_port
from bench.peer import PeerServer, ensure_peer_venv
from bench.serving_measure import Plan, cold_request, measure, median, warm_up
from bench.sse_client import Target

REPO = Path(__file__).resolve().parent.parent
COLD_SETTLE_S = 15.0


def start_meterway(store: Path, model: str, plan: Plan, work: Path
                   ) -> tuple[MeterwayServer, Target, dict[str, Any]]:
    """Cold starts, each on a fresh server (nothing loaded); the last server stays up for the warm runs."""
    colds: list[dict[str, Any]] = []
    for attempt in range(max(1, plan.cold_runs)):
        server = MeterwayServer(work / f"meterway-{attempt}", store, env=_meterway_env(plan), port=free_port())
        startup_s = server.start_timed()
        # A scaled-to-zero model lives on a platform that has long been up: let the pool's standby worker
        # finish importing the runtime, as it has in production, so the figure is the model's cold start.
        time.sleep(COLD_SETTLE_S)
        key = server.tenant_secret()
        target = Target("meterway", server.url, model, {"Authorization": f"Bearer {key}"})
        state_before = server.model_state(model, key)
        result = asyncio.run(cold_request(target, plan))
        cold = {"state_before": state_before, "header_state": result.headers.get("x-meterway-model-state"),
                "ttft_s": result.ttft_s, "completion_tokens": result.completion_tokens,
                "server_startup_s": startup_s, "server_up_for_s": startup_s + COLD_SETTLE_S}
        colds.append(cold)
        print(f"meterway cold start {attempt + 1}: {cold}", flush=True)
        if attempt < plan.cold_runs - 1:
            server.stop()
    return server, target, {"ttft_s": median([c["ttft_s"] for c in colds]), "runs": colds}


def _meterway_env(plan: Plan) -> dict[str, str]:
    # The pool sets torch's thread count itself (METERWAY_POOL_THREADS), overriding OMP_NUM_THREADS.
    return {**plan.env, **({"METERWAY_POOL_THREADS": str(plan.threads)} if plan.threads else {})}


def start_peer(store: Path, model: str, plan: Plan, work: Path) -> tuple[PeerServer, Target, dict[str, Any]]:
    """Install (if needed) and start ``transformers serve --continuous-batching`` with the model preloaded."""
    versions = ensure_peer_venv(work / "peer-install.log")
    peer_env = {**plan.env, **({"OMP_NUM_THREADS": str(plan.threads)} if plan.threads else {})}
    peer = PeerServer(store / model, free_port(), work / "peer.log", env=peer_env)
    print(f"starting the peer: {' '.join(peer.command())}", flush=True)
    startup_s = peer.start()
    return peer, Target("peer", peer.url, peer.model), {"versions": versions, "startup_s": startup_s,
                                                         "command": peer.command()}


def run_servers(store: Path, model: str, plan: Plan, work: Path, with_peer: bool) -> dict[str, Any]:
    """Start meterway (cold starts first) and the peer, warm both, measure them in turns, stop both."""
    results: dict[str, Any] = {}
    server, mw_target, cold = start_meterway(store, model, plan, work)
    peer: PeerServer | None = None
    targets = [mw_target]
    try:
        if with_peer:
            try:
                peer, peer_target, results["peer_info"] = start_peer(store, model, plan, work)
                targets.append(peer_target)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:  # meterway's figures stand
                results["peer_error"] = str(exc)
                print(f"the peer could not be started: {exc}", flush=True)
        for target in targets:
            asyncio.run(warm_up(target, plan))
        results.update(asyncio.run(measure(targets, plan)))
    finally:
        server.stop()
        if peer is not None:
            peer.stop()
    results["meterway"]["cold"] = cold
    if "peer" in results:
        results["peer"].update(results.pop("peer_info"))
    return results


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--single-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in both servers (0: default)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for both servers, e.g. OMP_WAIT_POLICY=PASSIVE (repeatable)")
    parser.add_argument("--no-peer", action="store_true", help="benchmark meterway alone")
    parser.add_argument("--distinct-prompts", action="store_true",
                        help="make every measured prompt new (only the chat template's system prompt repeats)")
    parser.add_argument("--sustained-seconds", type=float, default=20.0,
                        help="window of the sustained phase (N streams kept busy) per server; 0 skips it")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    env = dict(item.split("=", 1) for item in args.env)
    plan = Plan(args.tokens, args.streams, args.single_runs, args.rounds, args.cold_runs, env, args.threads,
                args.distinct_prompts, args.sustained_seconds)
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
    results.update(run_servers(store, args.model, plan, work, with_peer=not args.no_peer))
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
