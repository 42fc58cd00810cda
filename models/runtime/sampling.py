"""Choosing the next token for every row of a batch with as few tensor operations as possible.

Rows that share settings are handled together: all greedy rows by one ``argmax``, unseeded sampling rows by
one ``multinomial``. Only seeded rows draw one by one, each from its own ``torch.Generator``, so that a seed
gives the same text whatever else shares the batch.

Before the choice, each row's own adjustments apply to its row of the step's logits, in place and without
another forward pass: presence / frequency penalties over the tokens it generated so far, its ``logit_bias``,
and its grammar's token mask (structured outputs). Log probabilities are taken from the raw logits of the
same step, before any adjustment, as the model computed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from models.runtime.api import SamplingParams


class RowGrammar(Protocol):
    """A row's constraint (``models.runtime.grammar``): which tokens may come next, and the one that did."""

    def fill(self, bitmask: torch.Tensor, index: int) -> None:
        """Write the allowed next tokens into row ``index`` of ``bitmask`` (32 tokens per int32)."""

    def accept(self, token: int) -> bool:
        """Advance past ``token``; False if the grammar does not allow it."""


class Penalties:
    """OpenAI's presence and frequency penalties over the tokens this row generated so far."""

    def __init__(self, presence: float, frequency: float) -> None:
        self.presence = presence
        self.frequency = frequency
        self._counts: torch.Tensor | None = None

    def apply(self, row: torch.Tensor) -> None:
        if self._counts is None:
            return
        counts = self._counts[: row.shape[0]]
        row -= counts * self.frequency + (counts > 0).to(row.dtype) * self.presence

    def observe(self, token: int, vocab: int, device: torch.device) -> None:
        if self._counts is None:
            self._counts = torch.zeros(vocab, device=device)
        if token < self._counts.shape[0]:
            self._counts[token] += 1


@dataclass
class RowSampling:
    """One row's sampling settings and state, resolved for the device it runs on."""

    temperature: float
    top_p: float
    generator: torch.Generator | None
    penalties: Penalties | None = None
    bias: tuple[torch.Tensor, torch.Tensor] | None = None  # token ids, values
    grammar: RowGrammar | None = None
    logprobs: int = -1  # -1: none; else alternatives per token
    rejected: bool = field(default=False)  # its grammar refused the chosen token (the row must end)

    @property
    def adjusts(self) -> bool:
        return self.penalties is not None or self.bias is not None or self.grammar is not None


@dataclass(frozen=True)
class Logprob:
    """The sampled token's log probability and the top alternatives (ids, log probabilities)."""

    logprob: float
    top_ids: list[int]
    top_logprobs: list[float]


@dataclass(frozen=True)
class Picks:
    """A step's choice for every row, with log probabilities for the rows that asked for them."""

    tokens: list[int]
    logprobs: list[Logprob | None]


class SamplingPlan:
    """The sampling work for one batch composition; rebuilt only when rows join or leave."""

    def __init__(self, rows: list[RowSampling], device: torch.device) -> None:
        self._all = rows
        self._device = device
        self._adjusted = [(i, row) for i, row in enumerate(rows) if row.adjusts]
        self._grammars = [(i, row.grammar) for i, row in enumerate(rows) if row.grammar is not None]
        self._grammar_rows = torch.tensor([i for i, _ in self._grammars], dtype=torch.long, device=device)
        self._bitmask: torch.Tensor | None = None
        self._logprob_rows = [i for i, row in enumerate(rows) if row.logprobs >= 0]
        self._logprob_index = torch.tensor(self._logprob_rows, dtype=torch.long, device=device)
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

    def sample(self, logits: torch.Tensor) -> Picks:
        """Next token id per row from ``logits`` of shape ``[batch, vocab]`` (adjusted in place)."""
        raw = self._raw_logprobs(logits)
        if self._adjusted:
            self._adjust(logits)
        tokens = self._choose(logits)
        if self._adjusted:
            self._observe(tokens, logits.shape[-1])
        return Picks(tokens, self._logprobs(raw, tokens))

    def _choose(self, logits: torch.Tensor) -> list[int]:
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

    def _adjust(self, logits: torch.Tensor) -> None:
        for index, row in self._adjusted:
            if row.penalties is not None:
                row.penalties.apply(logits[index])
            if row.bias is not None:
                ids, values = row.bias
                logits[index].index_add_(0, ids, values.to(logits.dtype))
        if self._grammars:
            from models.runtime.grammar import apply_bitmask

            bitmask = self._bitmask_for(logits.shape[-1])
            for k, (_index, grammar) in enumerate(self._grammars):
                grammar.fill(bitmask, k)
            apply_bitmask(logits, bitmask, self._grammar_rows)

    def _bitmask_for(self, vocab: int) -> torch.Tensor:
        if self._bitmask is None:
            self._bitmask = torch.full((len(self._grammars), (vocab + 31) // 32), -1, dtype=torch.int32)
        return self._bitmask

    def _observe(self, tokens: list[int], vocab: int) -> None:
        for index, row in self._adjusted:
            token = tokens[index]
            if row.penalties is not None:
                row.penalties.observe(token, vocab, self._device)
            if row.grammar is not None and not row.grammar.accept(token):
                row.rejected = True

    def _raw_logprobs(self, logits: torch.Tensor) -> torch.Tensor | None:
        if not self._logprob_rows:
            return None
        return torch.log_softmax(logits.index_select(0, self._logprob_index).float(), dim=-1)

    def _logprobs(self, raw: torch.Tensor | None, tokens: list[int]) -> list[Logprob | None]:
        result: list[Logprob | None] = [None] * len(tokens)
        if raw is None:
            return result
        widest = max(self._all[i].logprobs for i in self._logprob_rows)
        chosen = raw.gather(1, torch.tensor([[tokens[i]] for i in self._logprob_rows], device=raw.device))
        top_values, top_ids = raw.topk(widest, dim=-1) if widest else (raw[:, :0], raw[:, :0].long())
        for k, index in enumerate(self._logprob_rows):
            wanted = self._all[index].logprobs
            result[index] = Logprob(float(chosen[k, 0]), top_ids[k, :wanted].tolist(),
                                    top_values[k, :wanted].tolist())
        return result


def _top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask tokens outside each row's nucleus (the smallest set whose probability reaches ``top_p``)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass ranked above each token
    sorted_logits = sorted_logits.masked_fill(before > top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def row_sampling(params: SamplingParams, device: torch.device, grammar: RowGrammar | None = None) -> RowSampling:
    """Resolve a request's settings: a seed becomes a generator owned by that sequence alone."""
    generator = None
    if params.seed is not None and params.temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(params.seed)
    penalties = None
    if params.presence_penalty or params.frequency_penalty:
        penalties = Penalties(params.presence_penalty, params.frequency_penalty)
    bias = None
    if params.logit_bias:
        bias = (torch.tensor([t for t, _ in params.logit_bias], dtype=torch.long, device=device),
                torch.tensor([v for _, v in params.logit_bias], device=device))
    return RowSampling(params.temperature, params.top_p, generator, penalties, bias, grammar, params.logprobs)
