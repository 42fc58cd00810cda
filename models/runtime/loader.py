"""Load a store directory into a runtime object, in a worker process: ``load(spec)``.

Weights are safetensors read by mmap; accelerate places them on the GPU when one is present and the spec
allows it, on the CPU otherwise. Which loader runs is chosen by the spec's task through a registry.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import structlog
import torch

from meterway.errors import InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from models.runtime.api import Embedder, LoadSpec, TextGenerator

log = structlog.get_logger(__name__)

_DTYPES = MappingProxyType({"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16})


# Model code of the demo catalog's architectures; another architecture imports on its first load.
PREWARM_ARCHITECTURES = ("llama", "bert")


def prewarm() -> None:
    """Import what a first load would otherwise import lazily (about 2 s of transformers' model code) and
    build what it would build once per process.

    The pool's worker calls this before its first frame, so a standby worker pays it while idle and a cold
    start only reads weights.
    """
    import importlib

    import transformers

    for name in ("AutoModel", "AutoModelForCausalLM", "AutoTokenizer", "AutoConfig"):
        getattr(transformers, name)
    for architecture in PREWARM_ARCHITECTURES:
        importlib.import_module(f"transformers.models.{architecture}.modeling_{architecture}")
        importlib.import_module(f"transformers.models.{architecture}.configuration_{architecture}")
    # transformers builds its table of checkpoint renamings (about 1,200 regular expressions, 0.4 s) on the
    # first from_pretrained of a process; building it here keeps that out of the cold start.
    conversions = importlib.import_module("transformers.conversion_mapping")
    build = getattr(conversions, "get_checkpoint_conversion_mapping", None)
    if callable(build):
        build(PREWARM_ARCHITECTURES[0])


def load(spec: LoadSpec) -> TextGenerator | Embedder:
    """Load the model described by ``spec``: a ``BatchingGenerator`` for chat, a ``MeanPoolingEmbedder``
    for embeddings."""
    loader = _LOADERS.get(spec.task)
    if loader is None:
        raise InvalidRequest(f"no runtime for task {spec.task!r}; known: {sorted(_LOADERS)}")
    torch.set_num_threads(spec.threads or os.cpu_count() or 1)
    return loader(spec)


def resolve_device(requested: str) -> torch.device:
    """``auto`` means the GPU when there is one; anything else is taken as given (``cpu``, ``cuda:1``)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype for a catalog dtype name."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise InvalidRequest(f"unsupported dtype {name!r}; known: {sorted(_DTYPES)}") from None


def load_generator(spec: LoadSpec) -> TextGenerator:
    """A causal LM with its detokenizer and EOS ids, decoding in a continuous batch."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from models.runtime.api import prefix_cache_bytes
    from models.runtime.generator import GATHER_GAP_S, BatchingGenerator

    device = resolve_device(spec.device)
    # The decode thread runs every forward pass (and packs the weights first) with its own OpenMP team. If
    # the loading thread had made a team too, libgomp would manage more threads than there are cores and cut
    # every idle spin to 100 iterations (its "throttled" spin): decoding was 1.4x slower. So it stays on one.
    torch.set_num_threads(1)
    model = _build(AutoModelForCausalLM, spec, device)
    eos_ids = _eos_ids(model)
    config_pad = model.config.pad_token_id
    pad_id = _first_id(model.generation_config.pad_token_id, config_pad, min(eos_ids, default=0))
    log.info("generator_loaded", model=spec.model_id, device=str(device), dtype=spec.dtype)
    return BatchingGenerator(
        model, Tokenizer.from_file(str(Path(spec.path) / "tokenizer.json")), eos_ids=eos_ids, pad_id=pad_id,
        context_length=int(model.config.max_position_embeddings), max_batch=spec.max_batch,
        background_batch=spec.background_batch,
        threads=spec.threads or os.cpu_count() or 1, max_adapters=int(spec.extra.get("max_adapters", "8")),
        prefill_tokens=int(spec.extra.get("prefill_tokens", "512")),
        prefix_cache_bytes=prefix_cache_bytes(spec.extra),
        lean_decode=not _switched_off(spec.extra.get("lean_decode", "true")),
        gather_gap_s=float(spec.extra.get("gather_ms", GATHER_GAP_S * 1000)) / 1000,
        warm_up=partial(_pack, spec.model_id, mode) if (mode := _packing_mode(spec, device)) else None)


def _build(auto_class: Any, spec: LoadSpec, device: torch.device) -> Any:
    """The model in eval mode: its store checkpoint assigned as it is when it maps key for key, else through
    ``from_pretrained`` (which renames and converts)."""
    from models.runtime.weights import assign_from_store

    dtype = resolve_dtype(spec.dtype)
    model = assign_from_store(auto_class, spec.path, dtype, device)
    if model is None:
        log.info("weights_converted", model=spec.model_id, reason="checkpoint keys differ from the model's")
        model = auto_class.from_pretrained(spec.path, dtype=dtype, device_map={"": str(device)})
    return model.eval()


def _pack(model_id: str, mode: str, model: torch.nn.Module) -> Iterator[object]:
    """Pack the weights, a few layers per slice (the decode thread runs the slices while it serves): always
    for ``"true"``, for ``"auto"`` when oneDNN's kernel beats the dense one on this CPU."""
    from models.runtime.packed import pack_linears_in_slices, time_kernels

    if mode == "auto":
        times = time_kernels(model)
        timed = {} if times is None else {"dense_ms": round(times.dense_ms, 2),
                                          "packed_ms": round(times.packed_ms, 2)}
        if times is None or not times.packing_pays:
            log.info("weights_dense", model=model_id, reason="packing is not faster on this CPU", **timed)
            return
        log.info("kernels_timed", model=model_id, **timed)
        yield "timed"
    started, layers = time.perf_counter(), 0
    for count in pack_linears_in_slices(model):
        layers += count
        yield count
    log.info("weights_packed", model=model_id, layers=layers, seconds=round(time.perf_counter() - started, 3))


def load_embedder(spec: LoadSpec) -> Embedder:
    """A sentence-embedding encoder (mean pooling, L2-normalised)."""
    from transformers import AutoModel

    from models.runtime.embedder import MeanPoolingEmbedder

    device = resolve_device(spec.device)
    model = _build(AutoModel, spec, device)
    pad_id = _first_id(model.config.pad_token_id, 0)
    log.info("embedder_loaded", model=spec.model_id, device=str(device), dtype=spec.dtype)
    return MeanPoolingEmbedder(model, pad_id=pad_id, max_tokens=int(model.config.max_position_embeddings),
                               threads=spec.threads or os.cpu_count() or 1)


def _packing_mode(spec: LoadSpec, device: torch.device) -> str | None:
    """The catalog entry's ``packed_weights``: ``"auto"`` (the default: pack where it is faster), ``"true"``
    or ``"false"``; ``None`` where nothing can be packed (a GPU, float16)."""
    from models.runtime.packed import can_pack

    mode = spec.extra.get("packed_weights", "auto").lower()
    if _switched_off(mode) or not can_pack(device, resolve_dtype(spec.dtype)):
        return None
    if mode not in ("auto", "true", "1", "yes"):
        raise InvalidRequest(f"packed_weights must be auto, true or false, not {mode!r}")
    return "auto" if mode == "auto" else "true"


def _switched_off(value: str) -> bool:
    """Whether a catalog ``extra`` switch says off (``false``, ``0`` or ``no``)."""
    return value.lower() in ("false", "0", "no")


def _eos_ids(model: Any) -> frozenset[int]:
    """End-of-sequence ids from the generation config (which may list several), else the model config."""
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, model.config.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)


def _first_id(*candidates: object) -> int:
    return next(int(c) for c in candidates if isinstance(c, int))  # type: ignore[call-overload]


_LOADERS: MappingProxyType[str, Callable[[LoadSpec], TextGenerator | Embedder]] = MappingProxyType(
    {"chat": load_generator, "embedding": load_embedder})
