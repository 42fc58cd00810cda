"""Structured outputs: a grammar per constrained row, as a token mask inside the continuous batch.

The engine is llguidance (docs/grammar-engines.md has the measurements behind the choice): it compiles a JSON
Schema into a grammar over this model's vocabulary and computes, per step, which tokens may come next; rows
with and without a grammar share the same forward passes. Compiled matchers are cached by schema and
copied for each row. The gateway validates each grammar before admitting a request
(``models.structured.validate``), so that a schema the engine cannot enforce is refused up front.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import llguidance
import torch

from models.structured import grammar_text

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from models.runtime.api import Grammar

CACHED_GRAMMARS = 256
_BITS = torch.arange(32, dtype=torch.int32)


class LlgRow:
    """One row's matcher."""

    def __init__(self, matcher: llguidance.LLMatcher) -> None:
        self._matcher = matcher

    def fill(self, bitmask: torch.Tensor, index: int) -> None:
        row = bitmask[index]
        self._matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())

    def accept(self, token: int) -> bool:
        return bool(self._matcher.consume_token(token)) and not self._matcher.is_error()


class GrammarCache:
    """Matchers for this model's vocabulary, one compile per distinct grammar."""

    def __init__(self, tokenizer: Tokenizer, eos_ids: frozenset[int], vocab_size: int) -> None:
        self._source = tokenizer
        self._eos = sorted(eos_ids)
        self._vocab = vocab_size
        self._tokenizer: llguidance.LLTokenizer | None = None  # built on first use (~0.1-1 s)
        self._compiled: OrderedDict[tuple[str, str], llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    def matcher(self, grammar: Grammar) -> LlgRow:
        """A fresh matcher for ``grammar``; raises ``ValueError`` if it does not compile."""
        key = (grammar.kind, grammar.source)
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = llguidance.LLMatcher(self._llg_tokenizer(), grammar_text(*key), log_level=0)
                if compiled.is_error():
                    raise ValueError(compiled.get_error())
                self._compiled[key] = compiled
                while len(self._compiled) > CACHED_GRAMMARS:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(key)
            return LlgRow(compiled.deep_copy())

    def _llg_tokenizer(self) -> llguidance.LLTokenizer:
        if self._tokenizer is None:
            copy = self._source.__class__.from_str(self._source.to_str())
            copy.no_padding()
            copy.no_truncation()
            self._tokenizer = llguidance.LLTokenizer(copy.to_str(), n_vocab=self._vocab, eos_token=self._eos)
        return self._tokenizer


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor, rows: torch.Tensor) -> None:
    """Set the logits of tokens a row's mask forbids to -inf (rows ``rows``, mask row k for rows[k])."""
    vocab = logits.shape[-1]
    allowed = ((bitmask.unsqueeze(-1) >> _BITS) & 1).bool().flatten(1)[:, :vocab].to(logits.device)
    picked = logits.index_select(0, rows).masked_fill_(~allowed, float("-inf"))
    logits.index_copy_(0, rows, picked)


def logits_width(model: torch.nn.Module) -> int:
    """The width of the model's logits (may exceed the tokenizer's vocabulary)."""
    head = model.get_output_embeddings()  # type: ignore[operator]
    if head is not None:
        return int(head.weight.shape[0])
    return int(model.config.vocab_size)  # type: ignore[union-attr,arg-type]
