"""Decode throughput of the in-worker runtime (continuous batching) on SmolLM2-135M, CPU or GPU.

Prints tokens/s for 1 and 8 concurrent 64-token completions, time to first token, adapter attach time, and,
in the same run, plain ``model.generate`` at batch 1 and a static batch of 8 as the reference. Run::

    .venv/bin/python -m bench.engine_bench [--store var/test-store] [--tokens 64] [--streams 8] [--no-reference]
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
    started = time.perf_counter()

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
    wall = time.perf_counter() - started
    total = sum(counts.values())
    return {"tok_s": total / wall, "tokens": total, "wall_s": wall,
            "ttft_p50": statistics.median(first.values()), "ttft_max": max(first.values())}


def reference(model, tokenizer, prompts: list[tuple[int, ...]], tokens: int) -> float:
    """Plain ``model.generate`` on a static, left-padded batch (EOS ignored): tokens/s."""
    import torch

    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
    return len(prompts) * tokens / (time.perf_counter() - started)


def make_adapter(model, directory: Path) -> None:
    """A random rank-8 LoRA on q_proj/v_proj, saved as peft would save a fine-tune."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(0.1)
    peft_model.save_pretrained(directory)
    peft_model.unload()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("METERWAY_TEST_STORE", "var/test-store"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-adapters", action="store_true")
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.runtime import load
    from models.runtime.api import LoadSpec

    path = str(Path(args.store) / "smollm2-135m-instruct")
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"transformers={transformers.__version__} cuda={torch.cuda.is_available()}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [chat_ids(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(args.streams)]

    started = time.perf_counter()
    generator = load(LoadSpec("smollm2-135m-instruct", path, "chat", max_batch=max(16, args.streams)))
    print(f"cold load: {time.perf_counter() - started:.2f}s")
    run_streams(generator, prompts[:1], 8, [None])  # warm-up
    single = run_streams(generator, prompts[:1], args.tokens, [None])
    print(f"engine 1 stream : {single['tok_s']:6.1f} tok/s  TTFT {single['ttft_p50']:.3f}s "
          f"({single['tokens']} tokens)")
    multi = run_streams(generator, prompts, args.tokens, [None])
    print(f"engine {args.streams} streams: {multi['tok_s']:6.1f} tok/s  TTFT p50 {multi['ttft_p50']:.3f}s "
          f"max {multi['ttft_max']:.3f}s ({multi['tokens']} tokens)")

    if not args.no_adapters:
        with tempfile.TemporaryDirectory() as tmp:
            base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            names = []
            for k in range(4):
                make_adapter(base, Path(tmp) / f"a{k}")
                seconds = generator.attach_adapter(f"a{k}", str(Path(tmp) / f"a{k}"))
                names.append(f"a{k}")
                print(f"adapter a{k} attach: {seconds * 1000:.1f} ms")
            mixed = run_streams(generator, prompts, args.tokens, names)
            print(f"engine {args.streams} streams over 4 adapters: {mixed['tok_s']:6.1f} tok/s "
                  f"({mixed['tok_s'] / multi['tok_s']:.2f}x base) TTFT p50 {mixed['ttft_p50']:.3f}s")
            base_after = run_streams(generator, prompts, args.tokens, [None])
            print(f"engine {args.streams} streams, base rows with peft attached: {base_after['tok_s']:6.1f} tok/s")
    generator.close()

    if not args.no_reference:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        print(f"model.generate batch 1 : {reference(model, tokenizer, prompts[:1], args.tokens):6.1f} tok/s")
        print(f"model.generate batch {args.streams} : "
              f"{reference(model, tokenizer, prompts, args.tokens):6.1f} tok/s")


if __name__ == "__main__":
    main()
