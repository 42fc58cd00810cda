"""A KV cache layer that writes each step in place instead of re-copying the whole cache.

transformers' ``DynamicLayer`` concatenates the new column onto the cache every step (a full copy per layer
per step); ``SlabLayer`` keeps keys and values in a buffer with spare columns and hands the model views of the
used part. When the batch changes shape (rows join or leave) the batch calls ``load`` with the new tensors.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Spare columns allocated each time a buffer (re)grows: one allocation per this many decode steps.
SPARE_COLUMNS = 64


class SlabLayer(DynamicLayer):
    """A ``DynamicLayer`` backed by a preallocated buffer (``[rows, heads, capacity, head_dim]``)."""

    def load(self, keys: torch.Tensor, values: torch.Tensor, spare: int = SPARE_COLUMNS) -> None:
        """Replace the cached states, copying them into a fresh buffer with ``spare`` free columns."""
        used = keys.shape[-2]
        shape = (*keys.shape[:-2], used + spare, keys.shape[-1])
        self._key_buffer = keys.new_empty(shape)
        self._value_buffer = values.new_empty(shape)
        self._key_buffer[..., :used, :] = keys
        self._value_buffer[..., :used, :] = values
        self.keys = self._key_buffer[..., :used, :]
        self.values = self._value_buffer[..., :used, :]
        self.device = keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new columns in place (regrowing the buffer when full); return the used views."""
        if not self.is_initialized:
            self.load(key_states, value_states)
            return self.keys, self.values
        used, new = self.keys.shape[-2], key_states.shape[-2]
        if used + new > self._key_buffer.shape[-2]:
            self.load(self.keys, self.values, spare=max(SPARE_COLUMNS, new))
        self._key_buffer[..., used:used + new, :] = key_states
        self._value_buffer[..., used:used + new, :] = value_states
        self.keys = self._key_buffer[..., :used + new, :]
        self.values = self._value_buffer[..., :used + new, :]
        return self.keys, self.values


def new_cache() -> DynamicCache:
    """An empty cache whose layers are ``SlabLayer``s (created lazily, one per decoder layer)."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = SlabLayer
    return cache
