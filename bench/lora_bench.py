"""LoRA on one loaded base: time to attach a rank-8 adapter; 8 streams over 4 adapters vs on the base.

Targets (docs/targets): attach ≤ 100 ms; aggregate tok/s of 8 concurrent streams spread over 4 adapters
≥ 0.7x 8 streams on the base. Adapters go the way an upload goes: validated against the base and stored
content-addressed by ``models.finetune``, then attached from the store directory, as the pool does. Base and
adapter rounds alternate and medians are reported, because this machine is shared and noisy. Run::

    .venv/bin/python -m bench.lora_bench [--store var/test-store] [--tokens 64] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine_bench import PROMPTS, chat_ids, make_adapter, run_streams
from bench.machine import describe

BASE = "smollm2-135m-instruct"


def store_adapters(store: Path, count: int, workdir: Path) -> tuple[list[Path], list[float]]:
    """Make ``count`` random rank-8 adapters, validate + store each as an upload; (dirs, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM

    from models.finetune.ingest import ingest
    from models.finetune.limits import UploadLimits
    from models.finetune.staging import StagingArea

    local = workdir / "store"
    local.mkdir()
    (local / BASE).symlink_to((store / BASE).resolve(), target_is_directory=True)
    base = AutoModelForCausalLM.from_pretrained(store / BASE, dtype=torch.float32)
    stored, seconds = [], []
    for k in range(count):
        torch.manual_seed(k)
        source = workdir / f"adapter{k}"
        make_adapter(base, source)
        started = time.perf_counter()
        with StagingArea(local, UploadLimits()) as area:
            for file in sorted(source.iterdir()):
                area.write_chunks(file.name, [file.read_bytes()])
            result = ingest(local, area, kind="lora", base=BASE, tenant="bench", name=f"a{k}")
        seconds.append(time.perf_counter() - started)
        stored.append(local / result.store_path)
    return stored, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("METERWAY_TEST_STORE", "var/test-store"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from models.runtime import load
    from models.runtime.api import LoadSpec

    store = Path(args.store)
    machine = describe()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    tokenizer = AutoTokenizer.from_pretrained(store / BASE)
    prompts = [chat_ids(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(args.streams)]
    with tempfile.TemporaryDirectory() as tmp:
        adapters, ingest_s = store_adapters(store, args.adapters, Path(tmp))
        generator = load(
            LoadSpec(
                BASE,
                str(store / BASE),
                "chat",
                max_batch=max(16, args.streams),
                extra={"max_adapters": str(max(8, args.adapters))},
            )
        )
        try:
            figures = measure(generator, adapters, prompts, args)
        finally:
            generator.close()
    figures.update(machine=machine, ingest_ms=[round(s * 1000, 1) for s in ingest_s])
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def measure(
    generator: Any, adapters: list[Path], prompts: list[tuple[int, ...]], args: Any
) -> dict[str, Any]:
    """Attach times, then alternating base / mixed-adapter rounds of concurrent streams."""
    run_streams(generator, prompts[:1], 8, [None])  # warm-up
    names, attach = [], []
    for k, directory in enumerate(adapters):
        attach.append(generator.attach_adapter(f"a{k}", str(directory)))
        names.append(f"a{k}")
    # A second attach of an adapter after detaching it: the steady-state cost once peft wraps the base.
    generator.detach_adapter(names[-1])
    reattach = generator.attach_adapter(names[-1], str(adapters[-1]))
    print(f"attached: {[round(s * 1000) for s in attach]} ms, re-attach {reattach * 1000:.0f} ms", flush=True)
    run_streams(generator, prompts[:2], 8, names[:2])  # warm the adapter path
    base_runs, mixed_runs = [], []
    for k in range(args.rounds):
        base_runs.append(run_streams(generator, prompts, args.tokens, [None])["tok_s"])
        mixed_runs.append(run_streams(generator, prompts, args.tokens, names)["tok_s"])
        print(f"round {k + 1}: base {base_runs[-1]:.1f} tok/s, adapters {mixed_runs[-1]:.1f} tok/s",
              flush=True)
    base, mixed = statistics.median(base_runs), statistics.median(mixed_runs)
    return {
        "attach_ms": [round(s * 1000, 1) for s in attach],
        "reattach_ms": round(reattach * 1000, 1),
        "base_tok_s": [round(x, 1) for x in base_runs],
        "mixed_tok_s": [round(x, 1) for x in mixed_runs],
        "base_median": round(base, 1),
        "mixed_median": round(mixed, 1),
        "ratio": round(mixed / base, 3),
        "streams": args.streams,
        "adapters": len(names),
        "tokens": args.tokens,
    }


def report(figures: dict[str, Any]) -> None:
    attach = figures["attach_ms"]
    print(f"validate + store one adapter (upload path): {figures['ingest_ms']} ms")
    print(
        f"attach rank-8 adapter: first {attach[0]} ms (wraps the base in peft), then {attach[1:]} ms; "
        f"re-attach {figures['reattach_ms']} ms; median {statistics.median(attach):.1f} ms (target ≤ 100 ms)"
    )
    print(
        f"{figures['streams']} streams on the base      : {figures['base_tok_s']} tok/s, "
        f"median {figures['base_median']}"
    )
    print(
        f"{figures['streams']} streams over {figures['adapters']} adapters: {figures['mixed_tok_s']} tok/s, "
        f"median {figures['mixed_median']}"
    )
    print(f"ratio adapters / base: {figures['ratio']:.2f}x (target ≥ 0.7x)")


if __name__ == "__main__":
    main()
