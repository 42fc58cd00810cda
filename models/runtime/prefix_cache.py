"""Keys and values of prompt prefixes already computed, reused by later prefills (automatic prefix caching).

Chat prompts of one application share their beginning: the chat template's system prompt (24 of SmolLM2's
~40 tokens for a short question), a few-shot preamble, a long document asked about several times. A
prompt's keys and values are cut into blocks of ``block_tokens``; block ``i`` is stored under the exact
tokens ``prompt[:(i + 1) * block_tokens]``, so a hit depends on the whole prefix before it (the blocks of
vLLM's automatic prefix caching, keyed by the tokens themselves rather than a hash: a collision cannot
serve another prompt's states). A prefill then computes only what follows the longest cached run of blocks,
and never the whole prompt: the last token is always computed, it gives the next-token logits. A prompt's tail
(after its last whole block, before its last token) is kept under ``prompt[:-1]``: the same prompt again
computes its last token only.

Only base-model rows take part: an adapter can change keys and values (LoRA on ``k_proj``/``v_proj``).
Blocks are evicted least recently used past ``max_bytes``. The decode thread alone uses this object.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

LayerStates = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, [heads, tokens, dim]


@dataclass(frozen=True)
class PrefixHit:
    """The cached states of a prompt's first ``tokens`` tokens."""

    tokens: int
    states: LayerStates


class PrefixCache:
    """Blocks of keys and values keyed by the prompt tokens up to each block's end, least recently used first."""

    def __init__(self, *, block_tokens: int = 8, max_bytes: int = 64 << 20) -> None:
        self.block_tokens = block_tokens
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[tuple[int, ...], LayerStates] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.tokens_reused = 0

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def nbytes(self) -> int:
        """Bytes of keys and values held."""
        return self._bytes

    def lookup(self, prompt: tuple[int, ...]) -> PrefixHit | None:
        """The longest run of cached blocks at the start of ``prompt`` that leaves its last token to compute,
        with the prompt's tail when every token before its last is cached (a repeated prompt)."""
        found: list[LayerStates] = []
        end = self.block_tokens
        while end < len(prompt) and (block := self._blocks.get(prompt[:end])) is not None:
            found.append(block)
            end += self.block_tokens
        blocks = len(found)
        whole = blocks == (len(prompt) - 1) // self.block_tokens  # a tail only follows all of its blocks
        tail = self._blocks.get(prompt[:-1]) if whole and self._has_tail(prompt, 0) else None
        if tail is not None:
            found.append(tail)
        if not found:
            return None
        self._touch(prompt, blocks)
        layers = len(found[0])
        states = [(torch.cat([b[i][0] for b in found], dim=1), torch.cat([b[i][1] for b in found], dim=1))
                  for i in range(layers)]
        tokens = states[0][0].shape[1]
        self.hits += 1
        self.tokens_reused += tokens
        return PrefixHit(tokens, states)

    def wants(self, prompt: tuple[int, ...], *, start: int = 0) -> bool:
        """Whether ``store`` would keep anything new of ``prompt`` (so its states are worth gathering)."""
        if self.max_bytes <= 0:
            return False
        block = self.block_tokens
        ends = range(start - start % block + block, (len(prompt) - 1) // block * block + 1, block)
        tail = self._has_tail(prompt, start) and prompt[:-1] not in self._blocks
        return tail or any(prompt[:end] not in self._blocks for end in ends)

    def store(self, prompt: tuple[int, ...], states: LayerStates, *, start: int = 0) -> None:
        """Keep the blocks of ``prompt`` from token ``start`` on (``states`` cover the whole prompt), and its
        tail: the tokens after the last whole block up to, not including, the last token, stored under
        ``prompt[:-1]``, so that the same prompt again computes its last token only (vLLM does the same).

        The last token is never kept: a later hit must leave at least that token to compute.
        """
        if self.max_bytes <= 0:
            return
        block = self.block_tokens
        blocks = (len(prompt) - 1) // block
        for begin in range(start - start % block, blocks * block, block):
            self._keep(prompt[:begin + block], states, begin, begin + block)
        if self._has_tail(prompt, start):
            self._keep(prompt[:-1], states, blocks * block, len(prompt) - 1)
        self._touch(prompt, blocks)
        self._evict()

    def _has_tail(self, prompt: tuple[int, ...], start: int) -> bool:
        """Whether ``prompt`` has a tail (tokens after its last whole block, before its last token) that is not
        all before ``start``."""
        return (len(prompt) - 1) % self.block_tokens != 0 and start < len(prompt) - 1

    def _keep(self, key: tuple[int, ...], states: LayerStates, begin: int, end: int) -> None:
        if key not in self._blocks:
            piece = [(k[:, begin:end].clone(), v[:, begin:end].clone()) for k, v in states]
            self._blocks[key] = piece
            self._bytes += sum(k.nbytes + v.nbytes for k, v in piece)

    def clear(self) -> None:
        """Drop every block (the model's weights changed)."""
        self._blocks.clear()
        self._bytes = 0

    def _touch(self, prompt: tuple[int, ...], blocks: int) -> None:
        """Mark a prompt's tail and first ``blocks`` blocks as just used, the first block last: a run is
        evicted from its end, never broken in the middle (a block after a missing one could never be found)."""
        if prompt[:-1] in self._blocks:
            self._blocks.move_to_end(prompt[:-1])
        for end in range(blocks * self.block_tokens, 0, -self.block_tokens):
            if prompt[:end] in self._blocks:
                self._blocks.move_to_end(prompt[:end])

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._blocks:
            _, piece = self._blocks.popitem(last=False)
            self._bytes -= sum(k.nbytes + v.nbytes for k, v in piece)
