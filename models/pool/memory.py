"""How much memory a model will take once loaded, estimated before loading it (for the pool's budget).

The estimate reads only the safetensors headers (and, for a chat model, its config): parameter count times
the bytes per parameter of the dtype the model is served at (a bfloat16 entry over fp32 weights takes half),
plus a margin for activations and the KV cache of a small batch. A chat engine adds two buffers of its own:
the packed copy of an LM head tied to the input embedding (the embedding keeps the dense one) and its prefix
cache (``models.runtime.api.prefix_cache_bytes``).
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING

from meterway.errors import Unavailable
from models.runtime.api import prefix_cache_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

MARGIN_FRACTION = 0.10
MARGIN_BYTES = 32 * 1024 * 1024
BYTES_PER_PARAMETER = {
    "float32": 4, "F32": 4, "float16": 2, "F16": 2, "bfloat16": 2, "BF16": 2, "float64": 8, "F64": 8,
    "int8": 1, "I8": 1, "U8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "int32": 4, "I32": 4, "int64": 8, "I64": 8,
}


def parameter_counts(model_dir: Path) -> dict[str, int]:
    """Parameters per stored dtype across the directory's safetensors files (headers only)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise Unavailable(f"no weights in {model_dir}: import the model first (meterway import)",
                          code="model_not_imported")
    counts: dict[str, int] = {}
    for file in files:
        with file.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            numel = 1
            for dim in tensor["shape"]:
                numel *= int(dim)
            counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + numel
    return counts


def estimate_bytes(model_dir: Path, dtype: str, *, task: str = "embedding",
                   extra: Mapping[str, str] | None = None) -> int:
    """Bytes the model needs served at ``dtype`` (its stored dtypes where ``dtype`` is not a float width)."""
    target = BYTES_PER_PARAMETER.get(dtype)
    weights = sum(count * (target or BYTES_PER_PARAMETER.get(stored, 4))
                  for stored, count in parameter_counts(model_dir).items())
    estimate = int(weights * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    if task == "chat":
        estimate += _tied_head_bytes(model_dir, target or 4)
        estimate += prefix_cache_bytes(extra or {})
    return estimate


def _tied_head_bytes(model_dir: Path, bytes_per_parameter: int) -> int:
    """The size of the LM head when it shares the embedding's weights (the engine packs a copy of it)."""
    config_file = model_dir / "config.json"
    if not config_file.exists():
        return 0
    config = json.loads(config_file.read_text())
    if not config.get("tie_word_embeddings") or "vocab_size" not in config or "hidden_size" not in config:
        return 0
    return int(config["vocab_size"]) * int(config["hidden_size"]) * bytes_per_parameter
