"""Endpoints' cost and behaviour under load (issue 14's three benchmarks), against real gateways.

- ``overhead``: the same trivial model (``meterway-echo``) through ``/v1`` and through an endpoint's
  ``scoring_uri`` (routing, the endpoint snapshot, the deployment header), alternating in short rounds on one
  warm gateway, at concurrency 1 and 16: latency p50 per request and requests/s. Target: added p50 <= 0.2 ms,
  throughput >= 0.95x.
- ``mirror``: 4 streams against a SmolLM2 deployment, with 20% mirrored to a second SmolLM2 deployment and
  without (alternating rounds): the primary's TTFT p50, and whether any primary request failed. Target: TTFT
  p50 with mirroring <= 1.25x without, zero failed.
- ``shift``: two gateway replicas on one PostgreSQL database; 8 streams against replica B while replica A
  moves the traffic 100/0 -> 0/100: failed requests (target 0) and the time from A's answer to the moment
  every request B routes goes to the new deployment (target <= 1 s).

Run::

    .venv/bin/python -m bench.endpoint_bench overhead|mirror|shift [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gateway_bench import _machine  # noqa: E402  (the repo root must be importable first)
from bench.sse_client import Target, run_round  # noqa: E402
from tests.conftest import fresh_pg_database  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

ECHO, SMOLLM, SMOLLM_BF16 = "meterway-echo", "smollm2-135m-instruct", "smollm2-135m-instruct-bf16"


def _request(port: int, path: str, secret: str) -> bytes:
    body = json.dumps({"model": ECHO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _connection(port: int, payload: bytes, until: float, latencies: list[float], failed: list[int]) -> None:
    """One keep-alive connection sending requests back to back, timing each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            sent = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            if int(head.split(b" ", 2)[1]) != 200:
                failed.append(1)
    finally:
        writer.close()


async def _load(port: int, payload: bytes, concurrency: int, seconds: float) -> tuple[float, float, int]:
    """(p50 latency in ms, requests/s, failures) of one round."""
    latencies: list[float] = []
    failed: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*[_connection(port, payload, until, latencies, failed) for _ in range(concurrency)])
    return 1000 * statistics.median(latencies), len(latencies) / (time.perf_counter() - started), len(failed)


def _endpoint(server: ServerProcess, secret: str, deployments: dict[str, str], **weights: Any) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        client.put(f"/v1/endpoints/{name}", json={}).raise_for_status()
        for deployment, model in deployments.items():
            client.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": model}).raise_for_status()
        client.put(f"/v1/endpoints/{name}", json=weights).raise_for_status()
    return name


async def _overhead(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    secret = str(server.create_key(f"bench-{uuid.uuid4().hex[:6]}")["secret"])
    name = _endpoint(server, secret, {"blue": ECHO}, traffic={"blue": 100})
    paths = {"v1": "/v1/chat/completions", "endpoint": f"/endpoints/{name}/v1/chat/completions"}
    payloads = {kind: _request(server.port, path, secret) for kind, path in paths.items()}
    figures: dict[str, Any] = {}
    for concurrency in (1, 16):
        for payload in payloads.values():
            await _load(server.port, payload, concurrency, 1.0)  # warm up
        rounds: dict[str, list[tuple[float, float, int]]] = {"v1": [], "endpoint": []}
        for _ in range(args.rounds):
            for kind, payload in payloads.items():
                rounds[kind].append(await _load(server.port, payload, concurrency, args.seconds))
        p50 = {kind: statistics.median(r[0] for r in values) for kind, values in rounds.items()}
        rps = {kind: statistics.median(r[1] for r in values) for kind, values in rounds.items()}
        figures[f"c{concurrency}"] = {
            "v1_p50_ms": round(p50["v1"], 3), "endpoint_p50_ms": round(p50["endpoint"], 3),
            "added_p50_ms": round(p50["endpoint"] - p50["v1"], 3), "v1_rps": round(rps["v1"], 1),
            "endpoint_rps": round(rps["endpoint"], 1), "throughput_ratio": round(rps["endpoint"] / rps["v1"], 3),
            "failed": sum(r[2] for values in rounds.values() for r in values)}
    return figures


async def _mirror(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    secret = str(server.create_key(f"bench-{uuid.uuid4().hex[:6]}")["secret"])
    name = _endpoint(server, secret, {"blue": SMOLLM, "green": SMOLLM_BF16}, traffic={"blue": 100})
    headers = {"Authorization": f"Bearer {secret}"}
    target = Target("endpoint", f"{server.url}/endpoints/{name}", "", headers)
    prompts = [f"Tell me about the number {i}." for i in range(4)]
    ttft: dict[str, list[float]] = {"off": [], "on": []}
    failed = 0
    async with httpx.AsyncClient(timeout=300) as client:
        for deployment in ("blue", "green"):  # both workers loaded and warm before any figure
            pinned = {"x-meterway-deployment": deployment, **headers}
            await run_round(client, Target(deployment, target.base_url, "", pinned), prompts, args.max_tokens)
        modes: list[tuple[str, dict[str, int]]] = [("off", {}), ("on", {"green": 20})]
        for round_index in range(args.rounds):
            for mode, mirrored in modes if round_index % 2 == 0 else modes[::-1]:
                (await client.put(f"{server.url}/v1/endpoints/{name}", headers=headers,
                                  json={"traffic": {"blue": 100}, "mirror_traffic": mirrored})).raise_for_status()
                for _ in range(5):
                    result = await run_round(client, target, prompts, args.max_tokens)
                    failed += len(result.errors)
                    ttft[mode].extend(s.ttft_s for s in result.streams if s.ttft_s is not None)
    p50 = {mode: statistics.median(values) for mode, values in ttft.items()}
    return {"ttft_p50_ms_without": round(1000 * p50["off"], 1), "ttft_p50_ms_with_20pct_mirror":
            round(1000 * p50["on"], 1), "ratio": round(p50["on"] / p50["off"], 3), "primary_failed": failed,
            "streams_per_mode": len(ttft["off"])}


async def _shift(first: ServerProcess, second: ServerProcess) -> dict[str, Any]:
    secret = str(first.create_key(f"bench-{uuid.uuid4().hex[:6]}")["secret"])
    name = _endpoint(first, secret, {"blue": ECHO, "green": ECHO}, traffic={"blue": 100})
    body = {"model": "", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    served: list[tuple[float, str]] = []
    failed: list[str] = []
    stop = asyncio.Event()

    async def stream(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await client.post(f"{second.url}/endpoints/{name}/v1/chat/completions", json=body)
            if response.status_code == 200:
                served.append((time.perf_counter(), response.headers["x-meterway-deployment"]))
            else:
                failed.append(response.text[:200])

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        streams = [asyncio.create_task(stream(client)) for _ in range(8)]
        await asyncio.sleep(2.0)
        response = await client.put(f"{first.url}/v1/endpoints/{name}", json={"traffic": {"green": 100}})
        response.raise_for_status()
        shifted = time.perf_counter()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*streams)
    last_blue = max((at for at, deployment in served if deployment == "blue"), default=shifted)
    return {"requests": len(served), "failed": len(failed), "seconds_until_new_weights_hold_on_the_other_replica":
            round(max(0.0, last_blue - shifted), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["overhead", "mirror", "shift"])
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps({"machine": _machine(), "bench": args.which}), flush=True)
    env = {"METERWAY_LOG_LEVEL": "warning"}
    with tempfile.TemporaryDirectory(prefix="mw-endpoint-bench-") as scratch:
        if args.which == "shift":
            with fresh_pg_database() as url:
                env.update(METERWAY_DATABASE_URL=url, METERWAY_KEY_PEPPER=uuid.uuid4().hex)  # one platform
                first = ServerProcess(home=Path(scratch) / "a", store=args.store, env=env).start()
                second = ServerProcess(home=Path(scratch) / "b", store=args.store, env=env).start()
                try:
                    figures = asyncio.run(_shift(first, second))
                finally:
                    first.stop()
                    second.stop()
        else:
            server = ServerProcess(home=Path(scratch) / "gateway", store=args.store, env=env).start()
            try:
                figures = asyncio.run((_overhead if args.which == "overhead" else _mirror)(server, args))
            finally:
                server.stop()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
