"""Decode throughput of the in-worker runtime (continuous batching) on SmolLM2-135M, CPU or GPU.

Prints tokens/s for 1 and 8 concurrent 64-token completions, time to first token, adapter attach time, and,
in the same run, plain ``model.generate`` at batch 1 and a static batch of 8 as the reference. Because the
machine is shared, each engine line also gives tokens per CPU-second of this process (less sensitive to other
processes than wall time). Run::

    .venv/bin/python -m bench.engine_bench [--store var/test-store] [--tokens 64] [--streams 8]
        [--threads N] [--prefill-tokens N] [--no-reference] [--no-adapters] [--weights auto|packed|dense]
        [--stock-forward]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

PROMPTS = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in Marrakesh.",
    "List twenty uses for a paperclip and explain each one.",
    "Tell me about the history of the Roman Empire.",
    "Write a poem about the sea, then explain its meaning.",
    "Explain how photosynthesis works to a ten year old.",
    "Describe your perfect day from morning to night.",
]


def chat_ids(tokenizer, text: str) -> tuple[int, ...]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    return tuple(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def run_streams(generator, prompts: list[tuple[int, ...]], tokens: int, adapters: list[str | None]) -> dict:
    """Submit all prompts at once; return aggregate tok/s and TTFT figures."""
    from models.runtime.api import GenerationRequest, SamplingParams

    done = threading.Barrier(len(prompts) + 1)
    first: dict[str, float] = {}
    counts: dict[str, int] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    def emitter(rid: str):
        def emit(delta) -> None:
            first.setdefault(rid, time.perf_counter() - started)
            if delta.finish_reason:
                counts[rid] = delta.completion_tokens
                threading.Thread(target=done.wait).start()
        return emit

    for i, ids in enumerate(prompts):
        rid = f"r{i}"
        generator.submit(GenerationRequest(rid, ids, SamplingParams(max_tokens=tokens, temperature=0),
                                           adapter=adapters[i % len(adapters)]), emitter(rid))
    done.wait()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    total = sum(counts.values())
    return {"tok_s": total / wall, "tokens": total, "wall_s": wall, "tok_per_cpu_s": total / cpu,
            "ttft_p50": statistics.median(first.values()), "ttft_max": max(first.values())}


def reference(model, tokenizer, prompts: list[tuple[int, ...]], tokens: int) -> str:
    """Plain ``model.generate`` on a static, left-padded batch (EOS ignored): tokens/s, wall and CPU."""
    import torch

    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
    total = len(prompts) * tokens
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return f"{total / wall:6.1f} tok/s ({total / cpu:6.1f} per CPU-s)"


def make_adapter(model, directory: Path) -> None:
    """A random rank-8 LoRA on q_proj/v_proj, saved as peft would save a fine-tune."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(0.1)
    peft_model.save_pretrained(directory)
    peft_model.unload()


def show(label: str, result: dict) -> None:
    print(f"{label:<44}: {result['tok_s']:6.1f} tok/s ({result['tok_per_cpu_s']:6.1f} per CPU-s)  "
          f"TTFT p50 {result['ttft_p50']:.3f}s max {result['ttft_max']:.3f}s  [{result['tokens']} tokens]",
          flush=True)


def bench_adapters(generator, path: str, prompts: list[tuple[int, ...]], tokens: int, base: dict) -> None:
    """Attach four rank-8 adapters, then decode the streams spread over them, and over the base again."""
    import torch
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        names = [f"a{k}" for k in range(4)]
        for name in names:
            make_adapter(model, Path(tmp) / name)
            seconds = generator.attach_adapter(name, str(Path(tmp) / name))
            print(f"adapter {name} attach: {seconds * 1000:.1f} ms", flush=True)
        mixed = run_streams(generator, prompts, tokens, names)
        show(f"engine {len(prompts)} streams over 4 adapters", mixed)
        print(f"  adapters / base: {mixed['tok_s'] / base['tok_s']:.2f}x wall, "
              f"{mixed['tok_per_cpu_s'] / base['tok_per_cpu_s']:.2f}x per CPU-s", flush=True)
        after = run_streams(generator, prompts, tokens, [None])
        show(f"engine {len(prompts)} streams, base, peft attached", after)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("METERWAY_TEST_STORE", "var/test-store"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--prefill-tokens", type=int, default=0,
                        help="prompt tokens prefilled per step (0: the engine's default)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-adapters", action="store_true")
    parser.add_argument("--weights", choices=("auto", "packed", "dense"), default="auto",
                        help="oneDNN's packed layout, torch's dense weights (MKL), or whichever the "
                             "worker finds faster here (the served default)")
    parser.add_argument("--stock-forward", action="store_true",
                        help="decode through transformers' forward, not the lean step (models/runtime/lean_decode.py)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.runtime import load
    from models.runtime.api import LoadSpec

    path = str(Path(args.store) / "smollm2-135m-instruct")
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"transformers={transformers.__version__} cuda={torch.cuda.is_available()} "
          f"load average={os.getloadavg()[0]:.1f}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [chat_ids(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(args.streams)]

    started = time.perf_counter()
    extra = {"prefill_tokens": str(args.prefill_tokens)} if args.prefill_tokens else {}
    extra["packed_weights"] = {"auto": "auto", "packed": "true", "dense": "false"}[args.weights]
    extra["lean_decode"] = "false" if args.stock_forward else "true"
    spec = LoadSpec("smollm2-135m-instruct", path, "chat", max_batch=max(16, args.streams),
                    threads=args.threads, extra=extra)
    generator = load(spec)
    print(f"cold load: {time.perf_counter() - started:.2f}s", flush=True)
    run_streams(generator, prompts[:1], 8, [None])  # warm-up
    show("engine 1 stream", run_streams(generator, prompts[:1], args.tokens, [None]))
    multi = run_streams(generator, prompts, args.tokens, [None])
    show(f"engine {args.streams} streams", multi)
    if not args.no_adapters:
        bench_adapters(generator, path, prompts, args.tokens, multi)
    generator.close()

    if not args.no_reference:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        print(f"model.generate batch 1 : {reference(model, tokenizer, prompts[:1], args.tokens)}", flush=True)
        print(f"model.generate batch {args.streams} : {reference(model, tokenizer, prompts, args.tokens)}",
              flush=True)


if __name__ == "__main__":
    main()
