"""The running batch: one left-padded KV cache shared by every sequence being decoded.

This is the design of text-generation-inference's python ``CausalLMBatch``: newcomers are prefilled together,
then their caches are concatenated into the running batch (both padded on the left to the same width); rows
leave by index selection, which frees their cache; columns that became padding for every row are trimmed.
Invariant: the cache holds ``width`` columns, ``mask`` says which are real, and ``next_ids`` are the tokens
sampled last step, not yet fed to the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from models.runtime.kvcache import layer_states, new_cache, replace_states
from models.runtime.sampling import SamplingPlan

if TYPE_CHECKING:
    from transformers import DynamicCache

    from models.runtime.sequence import Sequence

Forward = Callable[..., Any]


@dataclass(frozen=True)
class Prefix:
    """Cached states of the first ``tokens`` tokens of every row of a prefill, ``[rows, heads, tokens, dim]``."""

    tokens: int
    states: list[tuple[torch.Tensor, torch.Tensor]]


class KvBatch:
    """Sequences decoding together, with their shared cache, padding mask and positions."""

    def __init__(self, seqs: list[Sequence], cache: DynamicCache, mask: torch.Tensor,
                 positions: torch.Tensor) -> None:
        self.seqs = seqs
        self.cache = cache
        self.mask = mask  # bool [rows, width]: which cache columns are real tokens
        self.positions = positions  # long [rows]: the position id of each row's next token
        self.next_ids = torch.zeros(len(seqs), dtype=torch.long, device=mask.device)
        self._refresh()

    def __len__(self) -> int:
        return len(self.seqs)

    def _refresh(self) -> None:
        """Recompute what depends on the rows: the sampling plan and peft's adapter names."""
        self.plan = SamplingPlan([s.sampling for s in self.seqs], self.mask.device)
        self.adapter_names = [s.adapter_name for s in self.seqs]
        self._ones = torch.ones(len(self.seqs), 1, dtype=torch.bool, device=self.mask.device)

    @classmethod
    def prefill(cls, forward: Forward, seqs: list[Sequence], pad_id: int, device: torch.device,
                extra: dict[str, Any], prefix: Prefix | None = None) -> tuple[KvBatch, torch.Tensor]:
        """Run the prompts of ``seqs`` (left-padded together); return the batch and last-position logits.

        With a ``prefix`` (the cached states of every row's first ``prefix.tokens`` tokens, one row each),
        only the rest of each prompt is computed: the cache starts with the prefix columns, the padding sits
        between them and each row's remainder, and positions continue after the prefix.
        """
        skip = prefix.tokens if prefix is not None else 0
        rests = [seq.request.prompt_ids[skip:] for seq in seqs]
        width = max(len(rest) for rest in rests)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for row, rest in enumerate(rests):
            ids[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
            mask[row, width - len(rest):] = True
        ids, mask = ids.to(device), mask.to(device)
        position_ids = skip + (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        cache = new_cache(prefix.states if prefix is not None else None)
        if skip:
            mask = torch.cat([torch.ones(len(seqs), skip, dtype=torch.bool, device=device), mask], dim=1)
        out = forward(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids, cache=cache,
                      use_cache=True, logits_to_keep=1, **extra)
        batch = cls(seqs, cache, mask, mask.sum(dim=-1))
        return batch, out.logits[:, -1, :]

    def row_states(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One row's keys and values at its real columns, ``[heads, tokens, dim]`` per layer."""
        columns = self.mask[row]
        return [(keys[row][:, columns], values[row][:, columns]) for keys, values in layer_states(self.cache)]

    def step(self, forward: Forward, extra: dict[str, Any]) -> torch.Tensor:
        """Feed every row's last token; return the next-token logits ``[rows, vocab]``."""
        self.mask = torch.cat([self.mask, self._ones], dim=1)
        # A ready 4D mask (query length 1) spares transformers rebuilding it from the 2D mask every step.
        out = forward(input_ids=self.next_ids[:, None], attention_mask=self.mask[:, None, None, :],
                      position_ids=self.positions[:, None], cache=self.cache, use_cache=True,
                      logits_to_keep=1, **extra)
        self.positions += 1
        return out.logits[:, -1, :]  # type: ignore[no-any-return]

    def set_next(self, tokens: list[int]) -> None:
        """Remember the tokens just sampled: they are next step's input."""
        self.next_ids = torch.tensor(tokens, dtype=torch.long, device=self.mask.device)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in order), dropping the others' cache, then trim all-padding columns."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.seqs = [self.seqs[r] for r in rows]
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).long().argmax())  # first column real for some row
        self.mask = mask[:, start:]
        self.positions = self.positions.index_select(0, index)
        self.next_ids = self.next_ids.index_select(0, index)
        replace_states(self.cache, [(keys.index_select(0, index)[..., start:, :],
                                     values.index_select(0, index)[..., start:, :])
                                    for keys, values in layer_states(self.cache)])
        self._refresh()

    def merge(self, other: KvBatch) -> None:
        """Append ``other``'s rows, padding the narrower cache on the left."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        pad_self, pad_other = width - self.mask.shape[1], width - other.mask.shape[1]
        self.mask = torch.cat([F.pad(self.mask, (pad_self, 0)), F.pad(other.mask, (pad_other, 0))])
        merged = []
        for (my_keys, my_values), (their_keys, their_values) in zip(
                layer_states(self.cache), layer_states(other.cache), strict=True):
            merged.append((torch.cat([_pad_left(my_keys, pad_self), _pad_left(their_keys, pad_other)]),
                           torch.cat([_pad_left(my_values, pad_self), _pad_left(their_values, pad_other)])))
        replace_states(self.cache, merged)
        self.positions = torch.cat([self.positions, other.positions])
        self.next_ids = torch.cat([self.next_ids, other.next_ids])
        self.seqs = self.seqs + other.seqs
        self._refresh()


def _pad_left(states: torch.Tensor, columns: int) -> torch.Tensor:
    """Zero columns before the cached sequence axis (``[rows, heads, seq, dim]``)."""
    return F.pad(states, (0, 0, columns, 0)) if columns else states

