"""Read and check a safetensors header in pure Python, so that the gateway never imports torch.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of JSON + the tensor data. Every way that layout
can lie (a huge or non-JSON header, offsets past the end, overlapping or gapped tensors, a byte count
that does not match dtype x shape, an unknown dtype) is refused here with ``UploadRejected`` before any
loader sees it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterway.errors import UploadRejected

if TYPE_CHECKING:
    from pathlib import Path

# The safetensors library refuses headers past 100 MB; so do we (a tensor table that big is an attack).
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, TensorInfo]:
    """Parse and fully check ``path``'s header; returns its tensors by name (``__metadata__`` dropped)."""
    label = path.name
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise UploadRejected(f"{label}: not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", prefix)
        if length > max_header_bytes:
            raise UploadRejected(
                f"{label}: safetensors header of {length} bytes exceeds the {max_header_bytes}-byte limit"
            )
        if 8 + length > size:
            raise UploadRejected(f"{label}: safetensors header length {length} runs past the end of the file")
        raw = handle.read(length)
    tensors = _parse(label, raw)
    _check_layout(label, tensors, data_bytes=size - 8 - length)
    return tensors


def _parse(label: str, raw: bytes) -> dict[str, TensorInfo]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UploadRejected(
            f"{label}: safetensors header is not valid JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(document, dict):
        raise UploadRejected(f"{label}: safetensors header is not a JSON object")
    metadata = document.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise UploadRejected(f"{label}: safetensors __metadata__ must map strings to strings")
    return {name: _tensor(label, name, entry) for name, entry in document.items()}


def _tensor(label: str, name: str, entry: object) -> TensorInfo:
    if not isinstance(entry, dict):
        raise UploadRejected(f"{label}: tensor {name!r} has no dtype/shape/data_offsets entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise UploadRejected(f"{label}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise UploadRejected(f"{label}: tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_natural(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise UploadRejected(f"{label}: tensor {name!r} has invalid data_offsets {offsets!r}")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise UploadRejected(
            f"{label}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes but "
            f"{dtype} x {shape} needs {expected}"
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(label: str, tensors: dict[str, TensorInfo], *, data_bytes: int) -> None:
    """Tensors must tile the data section exactly: no overlap (aliasing), no gap, nothing out of range."""
    position = 0
    for tensor in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if tensor.end > data_bytes:
            raise UploadRejected(
                f"{label}: tensor {tensor.name!r} ends at byte {tensor.end}, past the "
                f"{data_bytes}-byte data section"
            )
        if tensor.begin < position:
            raise UploadRejected(f"{label}: tensor {tensor.name!r} overlaps another tensor")
        if tensor.begin > position:
            raise UploadRejected(
                f"{label}: unused bytes before tensor {tensor.name!r} (offsets inconsistent)"
            )
        position = tensor.end
    if position != data_bytes:
        raise UploadRejected(
            f"{label}: {data_bytes - position} trailing bytes after the last tensor "
            "(offsets inconsistent with the file size)"
        )
