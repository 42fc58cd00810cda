"""Batch throughput against online streams on the same model and gateway (issue 15's first benchmark).

One warm gateway serving SmolLM2: first ``--streams`` concurrent online chat requests (64-token answers) for
``--online`` requests in all, then a batch of ``--lines`` chat lines with the same prompts and answers, from
``batches.create`` to ``completed``. Both report aggregate completion tokens/s; target: batch >= 1.5x online.

Run::

    .venv/bin/python -m bench.batch_bench [--lines 256] [--online 64] [--streams 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import openai

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gateway_bench import _machine  # noqa: E402  (the repo root must be importable first)
from tests.server import ServerProcess  # noqa: E402

SMOLLM, ANSWER = "smollm2-135m-instruct", 64


def _messages(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a short story about lighthouse number {n}."}]


async def _online(ai: openai.AsyncOpenAI, total: int, streams: int) -> dict[str, Any]:
    gate, tokens = asyncio.Semaphore(streams), []

    async def one(n: int) -> None:
        async with gate:
            answer = await ai.chat.completions.create(model=SMOLLM, messages=_messages(n), max_tokens=ANSWER,
                                                      temperature=0)
            tokens.append(answer.usage.completion_tokens if answer.usage else 0)

    await one(-1)  # warm: the model is loaded before the clock starts
    tokens.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(total)))
    seconds = time.perf_counter() - started
    return {"requests": total, "streams": streams, "seconds": round(seconds, 2),
            "completion_tokens_per_s": round(sum(tokens) / seconds, 1)}


def _batch(ai: openai.OpenAI, lines: int, scratch: Path) -> dict[str, Any]:
    path = scratch / "requests.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": SMOLLM, "messages": _messages(n), "max_tokens": ANSWER,
                                                 "temperature": 0}}) + "\n" for n in range(lines)))
    with path.open("rb") as handle:
        uploaded = ai.files.create(file=handle, purpose="batch")
    started = time.perf_counter()
    batch = ai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    while (batch := ai.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    answers = [json.loads(line) for line in ai.files.content(batch.output_file_id or "").text.splitlines()]
    tokens = sum(a["response"]["body"]["usage"]["completion_tokens"] for a in answers)
    return {"lines": lines, "status": batch.status, "answered": len(answers), "seconds": round(seconds, 2),
            "completion_tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=256)
    parser.add_argument("--online", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(home=Path(scratch) / "gateway", store=args.store,
                               env={"METERWAY_LOG_LEVEL": "warning"}).start()
        try:
            secret = str(server.create_key(f"bench-{uuid.uuid4().hex[:6]}")["secret"])
            online = asyncio.run(_online(openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=secret,
                                                            max_retries=0, timeout=600), args.online, args.streams))
            batch = _batch(openai.OpenAI(base_url=f"{server.url}/v1", api_key=secret, max_retries=0), args.lines,
                           Path(scratch))
        finally:
            server.stop()
    ratio = batch["completion_tokens_per_s"] / online["completion_tokens_per_s"]
    print(json.dumps({"machine": _machine(), "online": online, "batch": batch,
                      "batch_vs_online": round(ratio, 2)}, indent=2))


if __name__ == "__main__":
    main()
