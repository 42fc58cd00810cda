"""Linear layers whose weights are kept in oneDNN's blocked layout, for CPU inference.

torch's CPU ``F.linear`` on fp32 goes to MKL's sgemm, which on this project's AMD EPYC machines runs the
few-row products of decoding well below what the machine can do (one SmolLM2 decode step: 48-60 ms of
products at 1 row, 96-180 ms at 8 rows). oneDNN (shipped inside torch) takes 32-35 and 42-50 ms on the same
weights once they are reordered into its blocked layout ahead of time: the same-precision prepacking torch's
own compiler (inductor) uses. The result is the same arithmetic in another summation order (differences of
~1e-6 on fp32 activations). Figures: docs/performance.md, ``bench/gemm_floor.py``.

Whether packing pays depends on the CPU: on Intel Xeon cores MKL's dense kernel ran one decode step's products
at 1 row in 23-29 ms against oneDNN's 32-42, and was level at 8 rows. ``time_kernels`` times both kernels on
the model's own first layers, on the thread that will serve, and the loader packs only when oneDNN wins
(``KernelTimes.packing_pays``).

``pack_linears`` turns a loaded model's ``nn.Linear`` modules into ``PackedLinear`` in place (the class
changes, the module stays, so peft still wraps them as ``Linear`` layers). The dense weight of a packed layer
is released and replaced by a zero-stride stand-in of the same shape, dtype and device, so memory is not
doubled; a weight that another module shares (a tied LM head and input embedding) is kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# The number of rows oneDNN chooses the blocked layout for. Measured on a 1536x576 weight, a layout for 8
# rows ran 1, 8 and 40 rows as fast as a layout chosen for each (a layout for 1 row was 1.6x slower at 8).
ROWS_HINT = 8
PACKABLE_DTYPES = (torch.float32, torch.bfloat16)
# What ``packing_pays`` times: the first weights of the model (4 decoder layers of a Llama), best of a few runs.
SAMPLE_WEIGHTS = 28
SAMPLE_REPEATS = 5
# Packing must save at least this fraction of the dense time: it costs load time and reorders memory.
PACKING_MIN_GAIN = 0.05
# Layers packed per slice when a serving model packs between its steps (one Llama decoder layer: ~14 ms).
LINEARS_PER_SLICE = 7
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4  # <sys/mman.h>; Linux, the platform the worker runs on


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` computing with a weight in oneDNN's blocked layout (``packed_weight``)."""

    packed_weight: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(input, self.packed_weight, self.bias, "none", [], "")


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether weights on ``device`` at ``dtype`` can be packed: on a CPU with oneDNN, fp32, or bf16 where
    oneDNN has a bf16 kernel for this CPU (AVX-512 BW/VL/DQ or AVX-NE-CONVERT; not on AVX2-only cores)."""
    if device.type != "cpu" or dtype not in PACKABLE_DTYPES or not torch.backends.mkldnn.is_available():
        return False
    return dtype != torch.bfloat16 or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass(frozen=True)
class KernelTimes:
    """Milliseconds the sampled products took at 1 row plus at ``ROWS_HINT`` rows, per kernel."""

    dense_ms: float
    packed_ms: float

    @property
    def packing_pays(self) -> bool:
        return self.packed_ms < self.dense_ms * (1 - PACKING_MIN_GAIN)


def time_kernels(model: torch.nn.Module, sample: int = SAMPLE_WEIGHTS, repeats: int = SAMPLE_REPEATS
                 ) -> KernelTimes | None:
    """Time the dense and the packed kernel on the model's first ``sample`` packable weights, at 1 row and at
    ``ROWS_HINT`` rows (a decode step alone and in a batch); ``None`` when nothing can be packed.

    Run it on the thread that will serve: the kernels' speed depends on its OpenMP team.
    """
    weights = [m.weight.detach() for m in _plain_linears(model) if can_pack(m.weight.device, m.weight.dtype)]
    weights = weights[:sample]
    if not weights:
        return None
    with torch.inference_mode():
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, ROWS_HINT) for w in weights]
        dense_s = packed_s = 0.0
        for rows in (1, ROWS_HINT):
            inputs = [torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights]
            dense_s += _best_of(repeats, functools.partial(_dense_products, inputs, weights))
            packed_s += _best_of(repeats, functools.partial(_packed_products, inputs, packed))
    return KernelTimes(dense_ms=dense_s * 1000, packed_ms=packed_s * 1000)


def _dense_products(inputs: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
    for x, weight in zip(inputs, weights, strict=True):
        F.linear(x, weight)


def _packed_products(inputs: list[torch.Tensor], packed: list[torch.Tensor]) -> None:
    for x, weight in zip(inputs, packed, strict=True):
        torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    run()  # the first call of a shape builds its kernel
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def pack_linears(model: torch.nn.Module, rows_hint: int = ROWS_HINT) -> int:
    """Pack every plain CPU ``nn.Linear`` of ``model`` in place; return how many were packed."""
    return sum(pack_linears_in_slices(model, rows_hint))


def pack_linears_in_slices(model: torch.nn.Module, rows_hint: int = ROWS_HINT,
                           per_slice: int = LINEARS_PER_SLICE) -> Iterator[int]:
    """``pack_linears`` a few layers at a time: yields how many it packed after every ``per_slice`` layers.

    Each layer is either dense or packed at any moment, and both compute the same product, so a model can
    serve between two slices."""
    shared = _weights_shared_with_other_modules(model)
    packed = 0
    for module in list(_plain_linears(model)):
        if not can_pack(module.weight.device, module.weight.dtype):
            continue
        # Grad mode per layer, never across a yield: a generator closed on another thread would restore the
        # mode it saved there.
        with torch.no_grad():
            _pack_one(module, shared, rows_hint)
        packed += 1
        if packed == per_slice:
            yield packed
            packed = 0
    if packed:
        yield packed


def _pack_one(module: torch.nn.Linear, shared: set[int], rows_hint: int) -> None:
    weight = module.weight
    module.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)
    module.__class__ = PackedLinear
    if weight.data_ptr() not in shared:
        _release_pages(weight)
        # Keep shape, dtype and device for whoever inspects the layer (peft does); free the storage.
        weight.data = torch.zeros((), dtype=weight.dtype, device=weight.device).expand(weight.shape)


def _release_pages(weight: torch.Tensor) -> None:
    """Give the whole pages under a dense weight back to the kernel now.

    Weights loaded from safetensors are slices of one file mapping that outlives the tensors, so dropping a
    tensor would leave its pages resident (counted in the worker's RSS) until memory pressure reclaims them.
    Only whole pages inside the tensor are advised, so nothing else that shares a page is touched; for a
    file mapping the pages stay in the page cache, for anonymous memory they read as zeros (the tensor is
    dropped right after).
    """
    start, size = weight.data_ptr(), weight.numel() * weight.element_size()
    first = -(-start // _PAGE) * _PAGE
    last = (start + size) // _PAGE * _PAGE
    if last > first:
        _libc().madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _plain_linears(model: torch.nn.Module) -> Iterator[torch.nn.Linear]:
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            yield module


def _weights_shared_with_other_modules(model: torch.nn.Module) -> set[int]:
    """Data pointers of weights held by more than one module (tied embeddings)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owners[parameter.data_ptr()] = owners.get(parameter.data_ptr(), 0) + 1
    return {pointer for pointer, count in owners.items() if count > 1}
