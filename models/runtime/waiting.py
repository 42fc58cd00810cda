"""The sequences waiting for a row of the running batch, and how many rows each kind may take.

Online sequences queue ahead of background ones (batch-job lines) and hold at most ``max_batch`` rows.
Background sequences may fill ``rows`` (``background_batch``, at least ``max_batch``) less an eighth of
``max_batch``, so that an online arrival finds a free row at the next step; while an online sequence arrived in
the last ``ONLINE_RECENT_S`` they take at most that eighth: on a CPU a step's time grows with its rows, and
online decode keeps its pace. Not thread-safe: the generator holds its lock around every call.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from models.runtime.sequence import Sequence

ONLINE_RECENT_S = 10.0  # background rows keep to their small share this long after an online arrival


class WaitQueue:
    """Queued sequences, online first, and the admission of the next step's newcomers."""

    def __init__(self, max_batch: int, rows: int) -> None:
        self._queue: deque[Sequence] = deque()
        self._max_batch, self.rows = max_batch, max(max_batch, rows)
        self._online_at = float("-inf")  # when the last online sequence arrived

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Sequence]:
        return iter(self._queue)

    def push(self, seq: Sequence) -> None:
        """Background sequences at the end; an online one ahead of every background one."""
        if seq.request.background:
            self._queue.append(seq)
            return
        self._online_at = time.monotonic()
        behind = next((i for i, queued in enumerate(self._queue) if queued.request.background), None)
        if behind is None:
            self._queue.append(seq)
        else:
            self._queue.insert(behind, seq)

    def remove(self, seq: Sequence) -> None:
        self._queue.remove(seq)

    def drain(self) -> list[Sequence]:
        """Every queued sequence, leaving none."""
        drained, self._queue = list(self._queue), deque()
        return drained

    def newcomers(self, running: list[Sequence], prefill_tokens: int) -> list[Sequence]:
        """Pop the sequences for this step's prefill: in order while their kind has a row free, the batch has
        room and their prompts fit ``prefill_tokens`` (the first always fits)."""
        background = sum(seq.request.background for seq in running)
        rooms = {True: self._background_rows() - background, False: self._max_batch - (len(running) - background)}
        room = self.rows - len(running)
        taken: list[Sequence] = []
        tokens = 0
        while self._queue and len(taken) < room:
            head = self._queue[0]
            prompt, kind = len(head.request.prompt_ids), head.request.background
            if (taken and tokens + prompt > prefill_tokens) or rooms[kind] < 1:
                break
            tokens += prompt
            rooms[kind] -= 1
            taken.append(self._queue.popleft())
        return taken

    def _background_rows(self) -> int:
        share = max(1, self._max_batch // 8)
        if time.monotonic() - self._online_at < ONLINE_RECENT_S:
            return share
        return max(1, self.rows - share)
