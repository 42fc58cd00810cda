"""Metering's cost through the full stack: requests/s with usage metering on vs off (target on/off >= 0.9).

Two real gateways serve the built-in ``meterway-echo`` model with auth and throttling as usual: one with the
product's meter (usage event to the durable local outbox, ledger consumer running), one whose meter drops
events (``bench/metering_server.py``). Rounds alternate between them on the same machine, and the median
round of each is reported, with each gateway's CPU time per request. Run::

    .venv/bin/python -m bench.metering_bench [--concurrency 16] [--rounds 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gateway_bench import _idle_cpu_rate, _machine, _request, _round  # noqa: E402
from tests.server import ServerProcess  # noqa: E402


async def _measure(servers: dict[str, ServerProcess], args: argparse.Namespace) -> dict[str, object]:
    payloads = {mode: _request(server.port, str(server.create_key(f"metering-{mode}")["secret"]), args.max_tokens)
                for mode, server in servers.items()}
    for mode, server in servers.items():
        await _round(server, payloads[mode], args.concurrency, 1.0)
    idle = {mode: await _idle_cpu_rate(server) for mode, server in servers.items()}
    rates: dict[str, list[float]] = {mode: [] for mode in servers}
    cpu: dict[str, list[float]] = {mode: [] for mode in servers}
    for _ in range(args.rounds):
        for mode, server in servers.items():
            rate, _served, cost = await _round(server, payloads[mode], args.concurrency, args.seconds, idle[mode])
            rates[mode].append(rate)
            cpu[mode].append(cost)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {"off_rps": round(off, 1), "on_rps": round(on, 1), "ratio": round(on / off, 3),
            "off_cpu_ms_per_request": round(statistics.median(cpu["off"]), 3),
            "on_cpu_ms_per_request": round(statistics.median(cpu["on"]), 3),
            "rounds_rps": {mode: [round(r, 1) for r in values] for mode, values in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps({"machine": _machine(), "concurrency": args.concurrency, "rounds": args.rounds}), flush=True)
    with tempfile.TemporaryDirectory(prefix="mw-metering-bench-") as scratch:
        env = {"METERWAY_LOG_LEVEL": "warning"}
        servers = {"on": ServerProcess(home=Path(scratch) / "on", store=args.store, env=env),
                   "off": ServerProcess(home=Path(scratch) / "off", store=args.store, env=env,
                                        command=("-m", "bench.metering_server"))}
        for server in servers.values():
            server.start()
        try:
            print(json.dumps({"metering": "on vs off", **asyncio.run(_measure(servers, args))}), flush=True)
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
