"""The floor under one decode step: the model's matrix products alone, nothing else, per kernel.

A decode step at batch ``rows`` multiplies ``rows`` activations by every weight matrix of the model (every
``Linear`` of every layer, and the LM head). No engine using a given kernel can step faster than those
products take with it, so ``rows ÷ floor`` is the highest tokens/s reachable at that batch size. Two kernels
are timed: ``dense`` is torch's ``F.linear`` (MKL's sgemm for fp32, what ``transformers serve`` runs) and
``packed`` is oneDNN on weights reordered ahead of time (``models.runtime.packed``, what meterway serves
with). Run::

    .venv/bin/python -m bench.gemm_floor [--model smollm2-135m-instruct] [--rows 1 8] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import describe  # noqa: E402


def linear_weights(model_dir: Path, dtype: str) -> list[object]:
    """Every ``Linear`` weight of the model as loaded for serving (tied LM head included once)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    return [module.weight.detach() for module in model.modules() if isinstance(module, torch.nn.Linear)]


def floor_ms(weights: list[object], rows: int, repeats: int, kernel: str) -> float:
    """Median milliseconds of one pass of ``rows`` activations through every weight with ``kernel``."""
    import torch
    import torch.nn.functional as F

    from models.runtime.packed import ROWS_HINT

    inputs = {int(w.shape[1]): torch.randn(rows, int(w.shape[1]), dtype=w.dtype) for w in weights}
    if kernel == "packed":
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, ROWS_HINT) for w in weights]
        calls = [(lambda x, p=p: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], ""), int(w.shape[1]))
                 for w, p in zip(weights, packed, strict=True)]
    else:
        calls = [(lambda x, w=w: F.linear(x, w), int(w.shape[1])) for w in weights]
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 3):
            started = time.perf_counter()
            for call, width in calls:
                call(inputs[width])
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "var" / "test-store")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--kernels", nargs="+", default=["dense", "packed"], choices=["dense", "packed"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    weights = linear_weights(args.store / args.model, args.dtype)
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    print(json.dumps({"machine": describe(), "model": args.model, "dtype": args.dtype,
                      "threads": torch.get_num_threads(), "matrices": len(weights),
                      "weight_mb": round(weight_bytes / 1e6, 1)}), flush=True)
    for rows in args.rows:
        for kernel in args.kernels:
            ms = floor_ms(weights, rows, args.repeats, kernel)
            print(json.dumps({"rows": rows, "kernel": kernel, "gemm_floor_ms": round(ms, 1),
                              "max_tokens_per_s": round(1000 * rows / ms, 1)}), flush=True)


if __name__ == "__main__":
    main()
