"""Each token id as OpenAI's logprobs show it: its text and its exact UTF-8 bytes.

Byte-level BPE vocabularies (GPT-2 style, as SmolLM2's) spell every byte as a printable character; the
table maps those back, so that a token holding half of a multi-byte character reports its real bytes.
Other tokenizers report the bytes of the token decoded alone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable spelling of each byte, reversed."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


class TokenText:
    """Text and bytes of token ids, computed once per id."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        decoder = json.loads(tokenizer.to_str()).get("decoder") or {}
        self._byte_level = decoder.get("type") == "ByteLevel"
        self._cache: dict[int, tuple[str, tuple[int, ...]]] = {}

    def of(self, token_id: int) -> tuple[str, tuple[int, ...]]:
        cached = self._cache.get(token_id)
        if cached is None:
            cached = self._cache[token_id] = self._compute(token_id)
        return cached

    def _compute(self, token_id: int) -> tuple[str, tuple[int, ...]]:
        piece = self._tokenizer.id_to_token(token_id)
        if self._byte_level and piece is not None:
            table = byte_decoder()
            if all(ch in table for ch in piece):
                raw = bytes(table[ch] for ch in piece)
                return raw.decode("utf-8", errors="replace"), tuple(raw)
        text = self._tokenizer.decode([token_id], skip_special_tokens=False)
        return text, tuple(text.encode())
