"""Batch jobs against online traffic on the same model and gateway (issue 15's benchmarks 1 and 2).

One warm gateway serving SmolLM2, in one run:

1. ``--streams`` (8) concurrent online chat requests, 64-token answers: aggregate completion tokens/s;
2. 2 online streams alone: TTFT p50 and tokens/s (the unloaded reference);
3. a batch of ``--lines`` (256) chat lines with the same prompts and answers, from ``batches.create`` to
   ``completed``: tokens/s (target: >= 1.5x the 8 online streams);
4. the same batch again with the 2 online streams running beside it: their TTFT p50 (target: <= 1.5x
   unloaded) and tokens/s (target: >= 0.8x unloaded);
5. after the gateway stops, transformers' own continuous batching (``generate_batch``, paged SDPA) on the same
   model and the first ``--offline-lines`` prompts: tokens/s (target: the batch >= 1.0x it).

Run::

    .venv/bin/python -m bench.batch_bench [--lines 256] [--online 64] [--streams 8] [--offline-lines 64]
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

import openai

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gateway_bench import _machine  # noqa: E402  (the repo root must be importable first)
from tests.server import ServerProcess  # noqa: E402

SMOLLM, ANSWER, BESIDE = "smollm2-135m-instruct", 64, 16  # BESIDE: online requests measured beside a batch


def _messages(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a short story about lighthouse number {n}."}]


async def _online(ai: openai.AsyncOpenAI, total: int, streams: int) -> dict[str, Any]:
    """``total`` streamed requests, ``streams`` at a time: tokens/s and time to first token."""
    gate, tokens, ttft = asyncio.Semaphore(streams), [], []

    async def one(n: int) -> None:
        async with gate:
            sent = time.perf_counter()
            stream = await ai.chat.completions.create(model=SMOLLM, messages=_messages(n), max_tokens=ANSWER,
                                                      temperature=0, stream=True,
                                                      stream_options={"include_usage": True})
            first = None
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - sent
                if chunk.usage:
                    tokens.append(chunk.usage.completion_tokens)
            ttft.append(first or 0.0)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(total)))
    seconds = time.perf_counter() - started
    return {"requests": total, "streams": streams, "seconds": round(seconds, 2),
            "completion_tokens_per_s": round(sum(tokens) / seconds, 1),
            "ttft_p50_s": round(statistics.median(ttft), 3)}


def _upload(ai: openai.OpenAI, lines: int, scratch: Path) -> str:
    path = scratch / f"requests-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": SMOLLM, "messages": _messages(n), "max_tokens": ANSWER,
                                                 "temperature": 0}}) + "\n" for n in range(lines)))
    with path.open("rb") as handle:
        return ai.files.create(file=handle, purpose="batch").id


async def _batch(ai: openai.AsyncOpenAI, file_id: str, lines: int,
                 beside: openai.AsyncOpenAI | None = None) -> dict[str, Any]:
    """One batch from create to completed; with ``beside``, 2 online streams run once it has started."""
    started = time.perf_counter()
    batch = await ai.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    online = None
    while (batch := await ai.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled"):
        counts = batch.request_counts
        if beside is not None and online is None and counts is not None and counts.completed >= 16:
            online = await _online(beside, BESIDE, 2)  # the batch is running at full width meanwhile
            continue
        await asyncio.sleep(0.2)
    seconds = time.perf_counter() - started
    content = await ai.files.content(batch.output_file_id or "")
    answers = [json.loads(line) for line in content.text.splitlines()]
    tokens = sum(a["response"]["body"]["usage"]["completion_tokens"] for a in answers)
    return {"lines": lines, "status": batch.status, "answered": len(answers), "seconds": round(seconds, 2),
            "completion_tokens_per_s": round(tokens / seconds, 1), "online_beside": online}


def _offline(store: Path, lines: int) -> dict[str, Any]:
    """transformers' ``generate_batch`` (continuous batching, paged SDPA) on the same prompts, greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(store / SMOLLM)
    model = AutoModelForCausalLM.from_pretrained(store / SMOLLM, dtype=torch.float32,
                                                 attn_implementation="paged|sdpa").eval()
    prompts = [list(tokenizer.apply_chat_template(_messages(n), add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]) for n in range(lines)]
    config = GenerationConfig(max_new_tokens=ANSWER, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    model.generate_batch(prompts[:2], generation_config=config, max_new_tokens=4)  # its set-up, off the clock
    started = time.perf_counter()
    outputs = model.generate_batch(prompts, generation_config=config)
    seconds = time.perf_counter() - started
    tokens = sum(len(output.generated_tokens) for output in outputs.values())
    return {"lines": lines, "seconds": round(seconds, 2), "completion_tokens_per_s": round(tokens / seconds, 1)}


async def _serve_all(server: ServerProcess, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    secret = str(server.create_key(f"bench-{uuid.uuid4().hex[:6]}")["secret"])
    ai = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=secret, max_retries=0, timeout=600)
    file_id = _upload(openai.OpenAI(base_url=f"{server.url}/v1", api_key=secret), args.lines, scratch)
    await _online(ai, 2, 2)  # warm: the model is loaded before the clock starts
    online = await _online(ai, args.online, args.streams)
    unloaded = await _online(ai, BESIDE, 2)
    alone = await _batch(ai, file_id, args.lines)
    beside = await _batch(ai, file_id, args.lines, beside=ai)
    return {"online": online, "online_2_streams": unloaded, "batch": alone, "batch_with_online": beside}


def _ratios(found: dict[str, Any]) -> dict[str, float | None]:
    online, unloaded, beside = found["online"], found["online_2_streams"], found["batch_with_online"]
    loaded = beside["online_beside"] or {}
    offline = found["offline_generate_batch"]["completion_tokens_per_s"]
    return {
        "batch_vs_online_8": round(found["batch"]["completion_tokens_per_s"] / online["completion_tokens_per_s"], 2),
        "batch_vs_generate_batch": round(found["batch"]["completion_tokens_per_s"] / offline, 2),
        "online_ttft_beside_batch_vs_unloaded": round(loaded["ttft_p50_s"] / unloaded["ttft_p50_s"], 2)
        if loaded else None,
        "online_tokens_beside_batch_vs_unloaded": round(
            loaded["completion_tokens_per_s"] / unloaded["completion_tokens_per_s"], 2) if loaded else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=256)
    parser.add_argument("--online", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--offline-lines", type=int, default=64)
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(home=Path(scratch) / "gateway", store=args.store,
                               env={"METERWAY_LOG_LEVEL": "warning"}).start()
        try:
            found = asyncio.run(_serve_all(server, args, Path(scratch)))
        finally:
            server.stop()
    found["offline_generate_batch"] = _offline(args.store, args.offline_lines)
    print(json.dumps({"machine": _machine(), **found, "ratios": _ratios(found)}, indent=2))


if __name__ == "__main__":
    main()
