"""Memory read bandwidth of this machine, for the decode bound (bandwidth ÷ bytes of weights read per token).

Decoding one token at batch 1 reads every weight once, so a model cannot decode faster than the machine
streams its weights from memory. Two readers are timed, best of N: numpy's ``sum`` (one thread) and torch's
``sum`` (all cores, as the model's matmuls run); the higher one is the bandwidth, i.e. the stricter bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Bandwidth:
    """Best read bandwidth seen, in bytes/s, by reader."""

    numpy_bytes_s: float
    torch_bytes_s: float | None
    array_bytes: int
    repeats: int

    @property
    def best_bytes_s(self) -> float:
        return max(self.numpy_bytes_s, self.torch_bytes_s or 0.0)


def _best_of(read: Callable[[], object], size: int, repeats: int) -> float:
    read()  # fault the pages in and warm the caches of the allocator
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - started)
    return size / best


def measure(array_bytes: int = 1 << 30, repeats: int = 5) -> Bandwidth:
    """Sum a float32 array of ``array_bytes`` ``repeats`` times with each reader; best run wins."""
    import numpy as np

    array = np.ones(array_bytes // 4, dtype=np.float32)
    numpy_rate = _best_of(array.sum, array.nbytes, repeats)
    torch_rate: float | None
    try:
        import torch

        tensor = torch.from_numpy(array)  # the same memory, no copy
        torch_rate = _best_of(tensor.sum, array.nbytes, repeats)
    except ImportError:
        torch_rate = None
    del array
    return Bandwidth(numpy_rate, torch_rate, array_bytes, repeats)
