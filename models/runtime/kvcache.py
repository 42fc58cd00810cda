"""Reading and replacing the per-layer states of transformers' ``DynamicCache`` for batch surgery.

The running batch changes shape when rows join (concatenate, padded on the left) or leave (index select);
these helpers give that code typed access to each layer's ``[rows, heads, seq, head_dim]`` keys and values.
A preallocated, written-in-place layer was measured against ``DynamicLayer``'s per-step concatenation: no
better at the lengths served here (SDPA copies the strided views anyway), so the stock layer stays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from transformers import DynamicCache

if TYPE_CHECKING:
    import torch
    from transformers.cache_utils import DynamicLayer


def new_cache(states: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A cache holding ``states`` (keys and values per layer), or an empty one whose ``DynamicLayer``s the
    first forward pass creates."""
    if states is None:
        return DynamicCache()
    return DynamicCache(ddp_cache_data=states)


def layer_states(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every layer."""
    states = []
    for layer in _layers(cache):
        if layer.keys is None or layer.values is None:
            raise RuntimeError("the cache holds no states yet")
        states.append((layer.keys, layer.values))
    return states


def replace_states(cache: DynamicCache, states: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put new keys and values (same number of layers) into the cache."""
    for layer, (keys, values) in zip(_layers(cache), states, strict=True):
        layer.keys, layer.values = keys, values


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    return cast("list[DynamicLayer]", cache.layers)
