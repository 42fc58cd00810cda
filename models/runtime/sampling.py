"""Choosing the next token for every row of a batch with as few tensor operations as possible.

Rows that share settings are handled together: all greedy rows by one ``argmax``, unseeded sampling rows by
one ``multinomial``. Only seeded rows draw one by one, each from its own ``torch.Generator``, so that a seed
gives the same text whatever else shares the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowSampling:
    """One row's sampling settings, resolved for the device it runs on."""

    temperature: float
    top_p: float
    generator: torch.Generator | None


class SamplingPlan:
    """The sampling work for one batch composition; rebuilt only when rows join or leave."""

    def __init__(self, rows: list[RowSampling], device: torch.device) -> None:
        sampled = [i for i, row in enumerate(rows) if row.temperature > 0]
        self.all_greedy = not sampled
        if self.all_greedy:
            return
        picked = [rows[i] for i in sampled]
        self._rows = torch.tensor(sampled, dtype=torch.long, device=device)
        self._temperatures = torch.tensor([[r.temperature] for r in picked], device=device)
        needs_top_p = any(r.top_p < 1.0 for r in picked)
        self._top_p = torch.tensor([[r.top_p] for r in picked], device=device) if needs_top_p else None
        unseeded = [k for k, r in enumerate(picked) if r.generator is None]
        self._unseeded = torch.tensor(unseeded, dtype=torch.long, device=device) if unseeded else None
        self._seeded = [(k, r.generator) for k, r in enumerate(picked) if r.generator is not None]

    def sample(self, logits: torch.Tensor) -> list[int]:
        """Next token id per row from ``logits`` of shape ``[batch, vocab]``."""
        tokens = logits.argmax(dim=-1)
        if self.all_greedy:
            return tokens.tolist()  # type: ignore[no-any-return]
        scaled = logits.index_select(0, self._rows).float() / self._temperatures
        if self._top_p is not None:
            scaled = _top_p_filter(scaled, self._top_p)
        probs = torch.softmax(scaled, dim=-1)
        picked = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
        if self._unseeded is not None:
            picked[self._unseeded] = torch.multinomial(probs.index_select(0, self._unseeded), 1).squeeze(1)
        for k, generator in self._seeded:
            picked[k] = torch.multinomial(probs[k], 1, generator=generator)[0]
        tokens[self._rows] = picked
        return tokens.tolist()  # type: ignore[no-any-return]


def _top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's nucleus (the smallest set whose probability reaches ``top_p``)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass ranked above each token
    sorted_logits = sorted_logits.masked_fill(before > top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def row_sampling(temperature: float, top_p: float, seed: int | None, device: torch.device) -> RowSampling:
    """Resolve a request's settings: a seed becomes a generator owned by that sequence alone."""
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    return RowSampling(temperature=temperature, top_p=top_p, generator=generator)
