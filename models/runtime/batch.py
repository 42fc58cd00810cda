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
LayerStates = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values

# Padding a left-padded prefill's rows to its longest costs compute per padded position; another pass costs a
# read of all the weights, which on the CPUs measured is worth some 20-40 prompt tokens of SmolLM2 (a 1-row
# forward pass against the per-token cost of a batched one, docs/performance.md). So rows are prefilled
# together while their padding wastes at most this many positions.
PAD_BUDGET_TOKENS = 64


@dataclass(frozen=True)
class Prefix:
    """What the prefix cache holds for each row of a prefill: per layer, keys and values of the row's first
    ``lengths[r]`` tokens, ``[heads, tokens, dim]`` (``None``: nothing cached for that row)."""

    rows: list[LayerStates | None]

    @classmethod
    def of(cls, rows: list[LayerStates | None]) -> Prefix | None:
        """The prefix of a prefill, ``None`` when no row has anything cached."""
        return cls(rows) if any(rows) else None

    @property
    def lengths(self) -> list[int]:
        return [states[0][0].shape[1] if states else 0 for states in self.rows]

    def stacked(self) -> LayerStates:
        """Every row's states left-padded with zeros to the longest: ``[rows, heads, width, dim]``."""
        width = max(self.lengths)
        padded = [[(_pad_left(keys, width - keys.shape[1]), _pad_left(values, width - values.shape[1]))
                   for keys, values in states] for states in self._filled()]
        return [(torch.stack([row[i][0] for row in padded]), torch.stack([row[i][1] for row in padded]))
                for i in range(len(padded[0]))]

    def packed(self) -> LayerStates:
        """Every row's states one after the other: ``[1, heads, sum of lengths, dim]``."""
        filled = self._filled()
        return [(torch.cat([row[i][0] for row in filled], dim=1)[None],
                 torch.cat([row[i][1] for row in filled], dim=1)[None]) for i in range(len(filled[0]))]

    def _filled(self) -> list[LayerStates]:
        sample = next(states for states in self.rows if states)
        empty = [(keys[:, :0], values[:, :0]) for keys, values in sample]
        return [states or empty for states in self.rows]


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

        With a ``prefix`` (the cached states of each row's first ``prefix.lengths[r]`` tokens), only the rest
        of each prompt is computed: the cache starts with the prefix columns (each row's own on the right of
        them), the padding sits between them and each row's remainder, and positions continue after each
        row's prefix.
        """
        skips = prefix.lengths if prefix is not None else [0] * len(seqs)
        rests = [seq.request.prompt_ids[skip:] for seq, skip in zip(seqs, skips, strict=True)]
        width = max(len(rest) for rest in rests)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for row, rest in enumerate(rests):
            ids[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
            mask[row, width - len(rest):] = True
        ids, mask = ids.to(device), mask.to(device)
        skipped = torch.tensor(skips, dtype=torch.long, device=device)[:, None]
        position_ids = skipped + (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        cache = new_cache(prefix.stacked() if prefix is not None else None)
        if prefix is not None:
            cached_width = max(skips)
            cached = torch.arange(cached_width, device=device)[None, :] >= cached_width - skipped
            mask = torch.cat([cached, mask], dim=1)
        out = forward(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids, cache=cache,
                      use_cache=True, logits_to_keep=1, **extra)
        batch = cls(seqs, cache, mask, mask.sum(dim=-1))
        return batch, out.logits[:, -1, :]

    @classmethod
    def prefill_packed(cls, forward: Forward, seqs: list[Sequence], device: torch.device,
                       extra: dict[str, Any], prefix: Prefix | None = None) -> tuple[KvBatch, torch.Tensor]:
        """Like ``prefill``, but the prompts run as one sequence, one after the other, without padding: each
        token attends to its own row's cached prefix and earlier tokens only (a block-diagonal causal mask,
        the "packed sequences" of varlen attention). Then each row's keys and values are gathered into the
        usual left-padded batch. Every row must use the same weights (no per-row adapters)."""
        skips = prefix.lengths if prefix is not None else [0] * len(seqs)
        rests = [seq.request.prompt_ids[skip:] for seq, skip in zip(seqs, skips, strict=True)]
        sizes = torch.tensor([len(rest) for rest in rests])
        cached_sizes = torch.tensor(skips)
        ids = torch.tensor([token for rest in rests for token in rest], dtype=torch.long, device=device)[None]
        position_ids = torch.cat([torch.arange(skip, skip + len(rest)) for skip, rest in zip(
            skips, rests, strict=True)]).to(device)[None]
        rows = torch.arange(len(seqs))
        row_of_token = rows.repeat_interleave(sizes)
        row_of_cached = rows.repeat_interleave(cached_sizes)
        order = torch.arange(len(row_of_token))
        own = row_of_token[:, None] == row_of_token[None, :]
        mask = torch.cat([row_of_token[:, None] == row_of_cached[None, :], own & (order[:, None] >= order[None, :])],
                         dim=1).to(device)
        cache = new_cache(prefix.packed() if prefix is not None else None)
        last = (sizes.cumsum(0) - 1).to(device)
        out = forward(input_ids=ids, attention_mask=mask[None, None], position_ids=position_ids, cache=cache,
                      use_cache=True, logits_to_keep=last, **extra)
        # Each row's columns in the packed cache: its cached prefix, then its new tokens; left-padded with
        # column 0 (masked) to the longest row.
        total = cached_sizes + sizes
        width = int(total.max())
        starts = torch.cat([torch.zeros(1, dtype=torch.long), cached_sizes.cumsum(0)[:-1]])
        new_starts = int(cached_sizes.sum()) + torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)[:-1]])
        column = torch.arange(width)[None, :] - (width - total)[:, None]  # position within the row's own columns
        index = torch.where(column < cached_sizes[:, None], starts[:, None] + column,
                            new_starts[:, None] + column - cached_sizes[:, None]).clamp(min=0).to(device)
        gathered = [(keys[0][:, index].transpose(0, 1), values[0][:, index].transpose(0, 1))
                    for keys, values in layer_states(cache)]
        batch_mask = (column >= 0).to(device)
        batch = cls(seqs, new_cache(gathered), batch_mask, total.to(device))
        return batch, out.logits[0]

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


def prefill_groups(rows: list[Sequence], cached: dict[int, int]) -> list[list[Sequence]]:
    """Split one admission into prefill passes: rows sorted by the length of what is left to compute (the
    prompt after its ``cached[id(row)]`` tokens), a new pass started where padding every row to the longest
    would waste more than ``PAD_BUDGET_TOKENS`` token positions."""
    def rest(seq: Sequence) -> int:
        return len(seq.request.prompt_ids) - cached.get(id(seq), 0)

    groups: list[list[Sequence]] = []
    group: list[Sequence] = []
    real = 0
    for seq in sorted(rows, key=rest):
        if group and (len(group) + 1) * rest(seq) - (real + rest(seq)) > PAD_BUDGET_TOKENS:
            groups.append(group)
            group, real = [], 0
        group.append(seq)
        real += rest(seq)
    return [*groups, group] if group else groups
