"""Throttling's cost through the full stack: requests/s with throttling on vs off, memory and Redis storage.

A real gateway (``meterway serve``, auth and metering on) serves the built-in ``meterway-echo`` model, so
what is measured is the gateway. "Off" is a key without limits (admission touches no store); "on" is a key
with every limit set high enough never to refuse (RPM, TPM, RPD, concurrency, a monthly budget), so that
each request runs the full admission and settlement. Off and on alternate in short
rounds on the same warm server to share the machine's noise; the median round of each is reported. The
load comes from a minimal keep-alive HTTP/1.1 client (a few microseconds per request) in this process, so
that the client's own cost dilutes the difference as little as possible. Run::

    .venv/bin/python -m bench.gateway_bench [--concurrency 16] [--rounds 5] [--seconds 4]

Besides requests/s (noisy on a shared machine), it reports the gateway process's CPU time per request, off
and on, less what the gateway burns when idle (its background loops, measured first): ``cpu_ratio`` = off/on
is the throughput ratio a CPU-bound gateway would reach, and moves less with the machine's load.
``evalsha_per_on_request`` counts the Redis server's EVALSHA calls (server-wide) per "on" request: at most
1 when settlements ride along with admissions, less when the admissions of one loop turn share a call.
Target (docs/performance.md): on/off >= 0.85.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import ServerProcess  # noqa: E402  (the repo root must be importable first)

REDIS_URL = "redis://127.0.0.1:6379/0"
GENEROUS: dict[str, Any] = {"rpm": 10**7, "tpm": 10**9, "rpd": 10**8, "max_concurrency": 10_000,
            "budget_amount": str(Decimal(10**6)), "budget_period": "month"}


def _request(port: int, secret: str, max_tokens: int) -> bytes:
    body = json.dumps({"model": "meterway-echo", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": max_tokens}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _worker(port: int, payload: bytes, until: float, counts: list[int]) -> None:
    """One keep-alive connection sending requests back to back until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            counts[0 if status == 200 else 1] += 1
    finally:
        writer.close()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the gateway process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _idle_cpu_rate(server: ServerProcess, seconds: float = 3.0) -> float:
    """CPU seconds per second the gateway burns with no traffic (its background loops)."""
    assert server.process is not None
    before, started = _cpu_seconds(server.process.pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (_cpu_seconds(server.process.pid) - before) / (time.perf_counter() - started)


async def _round(server: ServerProcess, payload: bytes, concurrency: int, seconds: float,
                 idle_rate: float = 0.0) -> tuple[float, int, float]:
    """Requests/s, requests and gateway CPU ms per request (less the idle burn) of one round.

    Any refusal invalidates the run."""
    assert server.process is not None
    counts = [0, 0]
    cpu_before, started = _cpu_seconds(server.process.pid), time.perf_counter()
    until = started + seconds
    await asyncio.gather(*[_worker(server.port, payload, until, counts) for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(server.process.pid) - cpu_before - idle_rate * elapsed
    if counts[1]:
        raise RuntimeError(f"{counts[1]} requests were refused: the 'on' limits are too low for this machine")
    return counts[0] / elapsed, counts[0], 1000 * cpu / max(counts[0], 1)


def _evalsha_calls() -> int:
    stats = redis.Redis.from_url(REDIS_URL).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _measure(server: ServerProcess, args: argparse.Namespace) -> dict[str, object]:
    tenant = f"bench-{os.getpid()}"
    secrets = {"off": server.create_key(tenant + "-off")["secret"],
               "on": server.create_key(tenant + "-on", **GENEROUS)["secret"]}
    payloads = {mode: _request(server.port, str(secret), args.max_tokens) for mode, secret in secrets.items()}
    for payload in payloads.values():
        await _round(server, payload, args.concurrency, 1.0)  # warm up: model ready, caches, scripts
    idle_rate = await _idle_cpu_rate(server)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu_ms: dict[str, list[float]] = {"off": [], "on": []}
    calls_before, on_requests = _evalsha_calls(), 0
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            rate, served, cost = await _round(server, payloads[mode], args.concurrency, args.seconds,
                                              idle_rate)
            rates[mode].append(rate)
            cpu_ms[mode].append(cost)
            on_requests += served if mode == "on" else 0
    off_rps, on_rps = statistics.median(rates["off"]), statistics.median(rates["on"])
    off_cpu, on_cpu = statistics.median(cpu_ms["off"]), statistics.median(cpu_ms["on"])
    return {"off_rps": round(off_rps, 1), "on_rps": round(on_rps, 1), "ratio": round(on_rps / off_rps, 3),
            "off_cpu_ms_per_request": round(off_cpu, 3), "on_cpu_ms_per_request": round(on_cpu, 3),
            "cpu_ratio": round(off_cpu / on_cpu, 3), "idle_cpu_per_s": round(idle_rate, 3),
            "rounds_rps": {mode: [round(rate, 1) for rate in values] for mode, values in rates.items()},
            "evalsha_per_on_request": round((_evalsha_calls() - calls_before) / max(on_requests, 1), 2)}


def _drop_counters(tenant: str) -> None:
    """Remove the bench keys' counters from Redis (budgets would otherwise live until the month ends)."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"mw:{{{tenant}*", count=500))
    if keys:
        client.delete(*keys)


def _machine() -> dict[str, object]:
    info = redis.Redis.from_url(REDIS_URL).info("server")
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "redis": info.get("redis_version"), "load_average": os.getloadavg(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps({"machine": _machine(), "concurrency": args.concurrency, "rounds": args.rounds,
                      "seconds_per_round": args.seconds, "max_tokens": args.max_tokens}), flush=True)
    with tempfile.TemporaryDirectory(prefix="mw-gateway-bench-") as scratch:
        for storage, env in (("memory", {}), ("redis", {"METERWAY_REDIS_URL": REDIS_URL})):
            server = ServerProcess(home=Path(scratch) / storage, store=args.store,
                                   env={**env, "METERWAY_LOG_LEVEL": "warning"})
            server.start()
            try:
                figures = asyncio.run(_measure(server, args))
            finally:
                server.stop()
                _drop_counters(f"bench-{os.getpid()}")
            print(json.dumps({"storage": storage, **figures}), flush=True)


if __name__ == "__main__":
    main()
