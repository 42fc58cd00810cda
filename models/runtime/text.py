"""Turning generated token ids into streamable text: incremental detokenization and stop strings.

Both pieces hold text back rather than emit something they may have to take back: the detokenizer while the
last bytes do not yet form a complete character, the stop matcher while the tail could be the start of a stop
string. Pure Python over a ``tokenizers.Tokenizer``; no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# How many prompt tokens seed the decode window: enough for tokenizers (SentencePiece) that drop a leading
# space when a token is decoded alone.
_CONTEXT_TOKENS = 5
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decodes one sequence token by token, never emitting a broken UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: tuple[int, ...]) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix = 0  # start of the decode window
        self._read = len(self._ids)  # tokens before this index were already emitted
        self._prefix_text = self._decode(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became stable (often empty for split characters)."""
        self._ids.append(token_id)
        full = self._decode(self._ids[self._prefix:])
        if len(full) <= len(self._prefix_text) or full.endswith(_REPLACEMENT):
            return ""
        new_text = full[len(self._prefix_text):]
        self._prefix = self._read
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids[self._prefix:self._read])
        return new_text

    def flush(self) -> str:
        """The text still held back, emitted as is because the sequence ended."""
        full = self._decode(self._ids[self._prefix:])
        return full[len(self._prefix_text):]


class StopMatcher:
    """Cuts the stream at the first stop string; holds back any tail that could start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add stable text; return (text safe to emit, whether a stop string was found)."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return buffer[:cut], True
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep], False

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def flush(self) -> str:
        """The held tail: it never completed a stop string, so it is real output."""
        held, self._held = self._held, ""
        return held


class TextStream:
    """The text side of one sequence: detokenize, then apply stop strings."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: tuple[int, ...], stops: tuple[str, ...]) -> None:
        self._detok = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopMatcher(stops)

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a generated token; return (text to emit now, whether a stop string ended the sequence)."""
        text = self._detok.push(token_id)
        if not text:
            return "", False
        return self._stops.feed(text)

    def finish(self) -> tuple[str, bool]:
        """All remaining text when the sequence ends (EOS, length), and whether a stop string cut it."""
        tail, stopped = self._stops.feed(self._detok.flush())
        return (tail, True) if stopped else (tail + self._stops.flush(), False)
