"""Background sequences (batch lines) in the engine: online ones overtake them, and while online traffic is
present background rows take an eighth of the batch; with none they fill it, less the rows kept for an online
arrival."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from models.runtime import waiting
from models.runtime.api import GenerationRequest, SamplingParams, TokenDelta
from tests.runtime.conftest import chat

if TYPE_CHECKING:
    import pytest


class Recorder:
    """First tokens in the order they came, and the most background rows decoding at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: list[str] = []
        self.active = self.most_active = 0
        self.finished: dict[str, TokenDelta] = {}
        self.done = threading.Event()
        self.expected = 0

    def sink(self, rid: str, background: bool) -> Any:
        def emit(delta: TokenDelta) -> None:
            with self.lock:
                if rid not in self.first:
                    self.first.append(rid)
                    self.active += background
                    self.most_active = max(self.most_active, self.active)
                if delta.finish_reason:
                    self.active -= background
                    self.finished[rid] = delta
                    if len(self.finished) == self.expected:
                        self.done.set()
        return emit


def _submit(generator: Any, recorder: Recorder, rid: str, ids: tuple[int, ...], tokens: int,
            background: bool) -> None:
    recorder.expected += 1
    params = SamplingParams(max_tokens=tokens, temperature=0.0)
    generator.submit(GenerationRequest(rid, ids, params, background=background), recorder.sink(rid, background))


def test_online_sequences_overtake_queued_background_ones(generator: Any, tokenizer: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "ONLINE_RECENT_S", 1e9)  # online traffic counts as recent throughout
    ids = chat(tokenizer, "Write a long story about a lighthouse.")
    recorder = Recorder()
    for n in range(24):  # more than the 16 rows: 8 or more of them queue
        _submit(generator, recorder, f"batch-{n}", ids, 24, background=True)
    for n in range(2):
        _submit(generator, recorder, f"online-{n}", ids, 4, background=False)
    assert recorder.done.wait(300), "the sequences never finished"
    # Submitted last, the online sequences still start ahead of every background one that had to queue: with
    # online traffic present, background rows take at most an eighth of the 16 rows.
    order = recorder.first
    assert max(order.index("online-0"), order.index("online-1")) <= 3, order
    assert all(delta.finish_reason == "length" for delta in recorder.finished.values())
    assert recorder.most_active == 2, recorder.most_active


def test_background_fills_the_batch_when_no_online_traffic(generator: Any, tokenizer: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "ONLINE_RECENT_S", 0.0)  # the last online arrival is long past
    ids = chat(tokenizer, "Name three rivers.")
    recorder = Recorder()
    for n in range(20):
        _submit(generator, recorder, f"fill-{n}", ids, 16, background=True)
    assert recorder.done.wait(300), "the sequences never finished"
    assert recorder.most_active == 16 - 2, recorder.most_active  # every row but the two kept for online
