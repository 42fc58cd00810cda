"""What the OpenAI-surface features cost the engine: JSON-schema decoding, penalties and logprobs.

8 concurrent greedy streams of up to 64 tokens on SmolLM2-135M, the same prompts in every mode, in one run:

- ``free``: no constraint (the reference);
- ``json_schema``: every row under a typical tool schema's grammar (llguidance token masks in the batch);
- ``penalties+logprobs``: presence / frequency penalties, a ``logit_bias`` and ``top_logprobs=5`` on every row.

Tokens/s is generated tokens over wall time, the median of ``--repeats`` runs per mode (modes interleaved, so
that load from other processes on this shared machine hits all of them alike). Also prints the grammar
compile time of the tool schema, cold and cached. Run::

    .venv/bin/python -m bench.surface_bench [--store var/test-store] [--streams 8] [--tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.engine_bench import PROMPTS, chat_ids

TOOL_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["location", "unit", "days"],
    "properties": {"location": {"type": "string", "description": "City and country"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 14},
                   "details": {"type": "array", "items": {"enum": ["wind", "rain", "uv"]}}},
}


def _params(mode: str, tokens: int) -> Any:
    from models.runtime.api import Grammar, SamplingParams

    if mode == "json_schema":
        return SamplingParams(max_tokens=tokens, temperature=0.0,
                              grammar=Grammar("json_schema", json.dumps(TOOL_SCHEMA)))
    if mode == "penalties+logprobs":
        return SamplingParams(max_tokens=tokens, temperature=0.0, presence_penalty=0.5, frequency_penalty=0.5,
                              logit_bias=((28, 1.5), (314, -2.0)), logprobs=5)
    return SamplingParams(max_tokens=tokens, temperature=0.0)


def run_mode(generator: Any, prompts: list[tuple[int, ...]], mode: str, tokens: int) -> float:
    """Tokens/s of all prompts submitted at once in ``mode``."""
    from models.runtime.api import GenerationRequest

    finished = threading.Semaphore(0)
    counts: dict[str, int] = {}

    def emitter(rid: str) -> Any:
        def emit(delta: Any) -> None:
            if delta.finish_reason:
                counts[rid] = delta.completion_tokens
                finished.release()
        return emit

    started = time.perf_counter()
    for i, ids in enumerate(prompts):
        generator.submit(GenerationRequest(f"{mode}-{i}-{started}", ids, _params(mode, tokens)), emitter(f"r{i}"))
    for _ in prompts:
        finished.acquire()
    return sum(counts.values()) / (time.perf_counter() - started)


def compile_times(generator: Any) -> tuple[float, float]:
    """Milliseconds to compile the tool schema's grammar the first time, and again (cached)."""
    from models.runtime.api import Grammar

    grammar = Grammar("json_schema", json.dumps({**TOOL_SCHEMA, "title": f"t{time.time()}"}))
    started = time.perf_counter()
    generator._grammars.matcher(grammar)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    generator._grammars.matcher(grammar)
    return cold * 1000, (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="var/test-store")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from models.runtime import load
    from models.runtime.api import LoadSpec

    path = Path(args.store) / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(path)
    generator = load(LoadSpec("smollm2-135m-instruct", str(path), "chat", max_batch=max(16, args.streams)))
    prompts = [chat_ids(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(args.streams)]
    modes = ["free", "json_schema", "penalties+logprobs"]
    for mode in modes:  # warm-up: weights packed, grammar tokenizer built, kernels timed
        run_mode(generator, prompts, mode, 8)
    while generator.stats()["warming_up"]:
        time.sleep(0.05)
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            rates[mode].append(run_mode(generator, prompts, mode, args.tokens))
    cold, cached = compile_times(generator)
    free = statistics.median(rates["free"])
    print(f"{args.streams} streams x {args.tokens} tokens, median of {args.repeats}")
    print(f"{'mode':<22}{'tok/s':>8}{'vs free':>9}")
    for mode in modes:
        rate = statistics.median(rates[mode])
        print(f"{mode:<22}{rate:>8.1f}{rate / free:>8.2f}x")
    print(f"tool-schema grammar compile: {cold:.2f} ms cold, {cached:.3f} ms cached")
    generator.close()


if __name__ == "__main__":
    main()
