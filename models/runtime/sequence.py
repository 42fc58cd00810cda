"""One sequence being generated: its request, its text stream and how it reports deltas.

The decode loop owns every ``Sequence``; deltas are emitted from that one thread, so a sequence's deltas
arrive in order and nothing follows its final delta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from models.runtime.api import EmitDelta, GenerationRequest, TokenDelta, TokenLogprob, TopLogprob
from models.runtime.text import TextStream

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from models.runtime.sampling import Logprob, RowSampling
    from models.runtime.token_text import TokenText

log = structlog.get_logger(__name__)


class Sequence:
    """A request's generation state: tokens so far, pending text, and whether it has finished."""

    def __init__(self, request: GenerationRequest, emit: EmitDelta, *, tokenizer: Tokenizer,
                 eos_ids: frozenset[int], max_tokens: int, sampling: RowSampling,
                 token_text: TokenText | None = None) -> None:
        self.request = request
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.generated = 0
        self.cached_tokens = 0  # set at prefill: prompt tokens taken from the prefix cache
        self.finished = False
        self._emit = emit
        self._eos_ids = eos_ids
        self._text = TextStream(tokenizer, request.prompt_ids, request.params.stop)
        self._token_text = token_text
        self._logprobs: list[TokenLogprob] = []  # since the last delta

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def adapter_name(self) -> str:
        """The adapter name for peft's mixed batches (``__base__`` for the base model)."""
        return self.request.adapter or "__base__"

    def accept(self, token_id: int, logprob: Logprob | None = None) -> None:
        """Take one generated token: emit its text, or finish on EOS, a stop string or the token limit."""
        self.generated += 1
        if token_id in self._eos_ids:
            tail, _ = self._text.finish()
            self.finish("stop", tail)
            return
        if self.sampling.rejected:
            self.finish("error", error="the output grammar refused the sampled token")
            return
        if logprob is not None and self._token_text is not None:
            self._logprobs.append(self._logprob_entry(token_id, logprob))
        text, stopped = self._text.push(token_id)
        if stopped:
            self.finish("stop", text)
        elif self.generated >= self.max_tokens:
            tail, stopped = self._text.finish()
            self.finish("stop" if stopped else "length", text + tail)
        elif text:
            self._send(TokenDelta(self.request_id, text, len(self.request.prompt_ids), self.generated,
                                  cached_tokens=self.cached_tokens, logprobs=self._take_logprobs()))

    def _logprob_entry(self, token_id: int, logprob: Logprob) -> TokenLogprob:
        assert self._token_text is not None
        text, raw = self._token_text.of(token_id)
        top = []
        for alt, value in zip(logprob.top_ids, logprob.top_logprobs, strict=True):
            alt_text, alt_raw = self._token_text.of(alt)
            top.append(TopLogprob(alt_text, alt_raw, value))
        return TokenLogprob(text, raw, logprob.logprob, tuple(top))

    def _take_logprobs(self) -> tuple[TokenLogprob, ...]:
        taken, self._logprobs = tuple(self._logprobs), []
        return taken

    def finish(self, reason: str, text: str = "", error: str | None = None) -> None:
        """Send the final delta (once) carrying the tokens generated so far."""
        if self.finished:
            return
        self.finished = True
        delta = TokenDelta(self.request_id, text, len(self.request.prompt_ids), self.generated, reason, error,
                           self.cached_tokens, self._take_logprobs())
        self._send(delta)

    def _send(self, delta: TokenDelta) -> None:
        try:
            self._emit(delta)
        except Exception:
            # A consumer that cannot take deltas is gone: stop spending compute on it.
            log.warning("emit_failed", request_id=self.request_id, exc_info=True)
            self.finished = True
