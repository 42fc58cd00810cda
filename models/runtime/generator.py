"""Continuous batching on a transformers causal LM: one background thread decodes every live sequence.

Callers (the pool's worker) ``submit`` from any thread; the decode thread admits queued sequences at the start
of each step (prefilled together, then merged into the running batch; each row's first token is emitted right
after), decodes one token for all rows, and drops finished or cancelled rows at once; every delta is emitted
from the decode thread. A step admits only the queued prompts that fit ``prefill_tokens`` (at least one), so
long prompts are sliced between steps. For a burst: base-model rows are prefilled as one packed sequence
(``KvBatch.prefill_packed``), an idle engine gathers arrivals a few milliseconds apart (``_gather_arrivals``),
and prompts that arrived during a prefill go before the next decode step (``_defer_step``);
docs/performance.md, "Latest". Background sequences (batch lines) queue behind online ones and take the rows
``models.runtime.waiting`` gives them. Locks: ``_cond`` guards the queues and counters (held briefly);
``_model_lock`` is held for a whole step, so that attaching or detaching an adapter never changes the model under
a forward pass.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import structlog
import torch

from models.runtime.adapters import BASE_ADAPTER, AdapterSet
from models.runtime.batch import Forward, KvBatch, Prefix, prefill_groups
from models.runtime.grammar import GrammarCache, logits_width
from models.runtime.lean_decode import LeanDecoder
from models.runtime.prefix_cache import PrefixCache
from models.runtime.sampling import row_sampling
from models.runtime.sequence import Sequence
from models.runtime.token_text import TokenText
from models.runtime.waiting import WaitQueue

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tokenizers import Tokenizer

    from models.runtime.api import EmitDelta, GenerationRequest
    from models.runtime.sampling import Picks

log = structlog.get_logger(__name__)

# A burst's requests reach the worker a few milliseconds apart (the gateway handles them one at a time): an
# idle engine waits while they keep coming less than GATHER_GAP_S apart, never longer than GATHER_MAX_S.
GATHER_GAP_S, GATHER_MAX_S = 0.006, 0.020
MAX_DEFERRED_STEPS = 2  # decode steps put off in a row so that newly arrived prompts are prefilled first
WARM_UP_BUSY_STRIDE = 8  # while busy, one warm-up slice every this many steps; while idle, one after another


class BatchingGenerator:
    """A ``TextGenerator``: a loaded causal LM decoding many sequences together.

    ``stats()`` keys (all floats): ``batch_size`` (rows decoding now), ``queue_depth`` (submitted, not yet
    admitted), ``tokens_generated_total``, ``prompt_tokens_total`` (prefilled), ``sequences_finished_total``,
    ``steps_total`` (decode steps), ``prefill_passes_total`` (forward passes over new prompts),
    ``adapters_attached``, ``adapter_loads_total``, ``adapter_cache_hits_total`` (attach calls for an adapter
    already attached), ``adapter_evictions_total``, ``adapter_last_attach_seconds``, ``prefix_cache_hits_total``
    (prompts that started from cached blocks), ``prefix_cache_tokens_reused_total`` (prompt tokens not
    recomputed), ``prefix_cache_bytes``, ``warming_up`` (1 while the weights are still being packed).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, *, eos_ids: frozenset[int], pad_id: int,
                 context_length: int, max_batch: int = 16, background_batch: int = 0, threads: int = 0,
                 max_adapters: int = 8,
                 prefill_tokens: int = 512, prefix_cache_bytes: int = 64 << 20, lean_decode: bool = True,
                 gather_gap_s: float = GATHER_GAP_S, gather_max_s: float = GATHER_MAX_S,
                 warm_up: Callable[[torch.nn.Module], Iterator[object]] | None = None) -> None:
        """``warm_up``: work on the weights (packing), run in slices (iterator items) by the decode thread
        after its first token (``_warm_up_slice``); on failure the model keeps its weights as they are."""
        self._model = model
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._pad_id = pad_id
        self._context = context_length
        self._max_batch = max(1, max_batch)  # online rows
        self._prefill_tokens = prefill_tokens
        self._gather = (gather_gap_s, gather_max_s)  # ``_gather_arrivals``
        self._deferred = 0  # decode steps put off in a row (``_defer_step``)
        self._prefixes = PrefixCache(max_bytes=prefix_cache_bytes)
        self._token_text = TokenText(tokenizer)
        self._grammars = GrammarCache(tokenizer, eos_ids, logits_width(model))
        self._threads = threads
        self._device = next(model.parameters()).device
        self._cond = threading.Condition()
        self._model_lock = threading.Lock()
        self._pending = WaitQueue(self._max_batch, background_batch)  # online sequences first
        self._endings: dict[str, tuple[str, str | None]] = {}  # request id -> (finish reason, error)
        self._batch: KvBatch | None = None
        self._admitting: list[Sequence] = []  # being prefilled: not queued, not yet in the batch
        self._closed = False
        self._counters = dict.fromkeys(
            ("tokens_generated_total", "prompt_tokens_total", "sequences_finished_total", "steps_total",
             "prefill_passes_total"), 0)
        self.adapters = AdapterSet(model, max_adapters=max_adapters, in_use=self._adapters_in_use)
        # Decode steps of base-model rows, where this architecture has a lean step (``lean_decode``).
        self._lean = LeanDecoder.for_model(model) if lean_decode else None
        self._warm_up = warm_up(model) if warm_up is not None else None
        self._served = False  # the warm-up starts after the first admission: a cold start's first token first
        self._busy_steps = 0  # steps in a row with rows to decode (``_warm_up_slice``)
        self._thread = threading.Thread(target=self._run, name="decode-loop", daemon=True)
        self._thread.start()

    # -- the TextGenerator contract -------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, emit: EmitDelta) -> None:
        """Queue a sequence; it joins the running batch at the next step. Thread-safe."""
        params = request.params
        room = self._context - len(request.prompt_ids)  # the guard: prompt + completion must fit the context
        grammar = self._grammars.matcher(params.grammar) if params.grammar is not None else None
        seq = Sequence(request, emit, tokenizer=self._tokenizer, eos_ids=self._eos_ids,
                       max_tokens=min(params.max_tokens, room), token_text=self._token_text,
                       sampling=row_sampling(params, self._device, grammar))
        with self._cond:
            if self._closed:
                raise RuntimeError("the generator is closed")
            self._pending.push(seq)
            self._cond.notify()

    def cancel(self, request_id: str) -> None:
        """End a sequence at the next step with ``finish_reason='cancelled'``. Thread-safe."""
        with self._cond:
            self._endings[request_id] = ("cancelled", None)
            self._cond.notify()

    def attach_adapter(self, name: str, path: str) -> float:
        """Attach a LoRA adapter between two steps; returns seconds spent attaching."""
        with self._model_lock:
            return self.adapters.attach(name, path)

    def detach_adapter(self, name: str) -> None:
        """Drop an adapter; sequences still using it end with an error."""
        with self._model_lock:
            with self._cond:
                for seq in self._live():
                    if seq.request.adapter == name:
                        self._endings[seq.request_id] = ("error", f"adapter '{name}' was detached")
            self.adapters.detach(name)

    def close(self) -> None:
        """Stop the decode loop (live sequences end with an error) and release the model."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._model = None  # type: ignore[assignment]
        self.adapters = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def stats(self) -> dict[str, float]:
        """Gauges and counters for metrics (keys documented on the class)."""
        with self._cond:
            values: dict[str, float] = {k: float(v) for k, v in self._counters.items()}
            values["queue_depth"] = float(len(self._pending))
        batch = self._batch
        values["batch_size"] = float(len(batch) if batch is not None else 0)
        values["warming_up"] = float(self._warm_up is not None)
        prefixes = self._prefixes
        values.update(prefix_cache_hits_total=float(prefixes.hits),
                      prefix_cache_tokens_reused_total=float(prefixes.tokens_reused),
                      prefix_cache_bytes=float(prefixes.nbytes))
        adapters = self.adapters
        if adapters is not None:
            values.update(adapters_attached=float(len(adapters)), adapter_loads_total=float(adapters.loads),
                          adapter_cache_hits_total=float(adapters.hits),
                          adapter_evictions_total=float(adapters.evictions),
                          adapter_last_attach_seconds=adapters.last_attach_seconds)
        return values

    # -- the decode thread ----------------------------------------------------------------------------------

    def _live(self) -> list[Sequence]:
        batch = self._batch
        return list(self._pending) + (list(batch.seqs) if batch is not None else [])

    def _adapters_in_use(self) -> set[str]:
        with self._cond:
            return {s.request.adapter for s in self._live() if s.request.adapter}

    def _run(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while self._wait_for_work():
                with self._model_lock:
                    try:
                        self._iterate()
                    except Exception as exc:  # the loop must survive anything: fail what was running
                        log.exception("decode_step_failed")
                        self._fail_batch(exc)
                    self._warm_up_slice()
            self._shutdown()

    def _warm_up_slice(self) -> None:
        """A slice while idle; while busy, one every ``WARM_UP_BUSY_STRIDE`` steps (a slice is 10-40 ms)."""
        if self._warm_up is None or not self._served:
            return
        busy = self._batch is not None or bool(self._pending)
        self._busy_steps = self._busy_steps + 1 if busy else 0
        if busy and self._busy_steps % WARM_UP_BUSY_STRIDE:
            return
        try:
            next(self._warm_up)
        except StopIteration:
            self._warm_up = None
        except Exception:
            log.exception("warm_up_failed")
            self._warm_up = None

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not (self._closed or self._pending or self._endings or self._batch is not None
                       or (self._warm_up is not None and self._served)):
                self._cond.wait()
            if self._batch is None and self._pending:
                self._gather_arrivals()
            return not self._closed

    def _gather_arrivals(self) -> None:
        """On an idle engine, wait while requests keep arriving less than ``gather_gap_s`` apart (at most
        ``gather_max_s``, not past a full batch): a burst is then prefilled in one pass. Holds ``_cond``."""
        gap, longest = self._gather
        if gap <= 0:
            return
        deadline = time.monotonic() + longest
        while not self._closed and len(self._pending) < self._max_batch:
            seen = len(self._pending)
            left = deadline - time.monotonic()
            if left <= 0 or not self._cond.wait(min(gap, left)) or len(self._pending) == seen:
                return

    def _iterate(self) -> None:
        newcomers = self._take_work()
        if newcomers:
            self._admit(newcomers)
            if self._defer_step():
                return
        self._deferred = 0
        if self._batch is not None:
            batch = self._batch
            logits = batch.step(*self._decoder_for(batch))
            self._counters["steps_total"] += 1
            self._accept(batch, batch.plan.sample(logits))

    def _defer_step(self) -> bool:
        """Whether to prefill the requests that arrived during this admission before the next decode step
        (at most ``MAX_DEFERRED_STEPS`` times in a row, and only if one prefill admits them all)."""
        with self._cond:
            room = self._pending.rows - (len(self._batch) if self._batch is not None else 0)
            waiting = sum(len(seq.request.prompt_ids) for seq in self._pending)
            if (not self._pending or len(self._pending) > room or waiting > self._prefill_tokens
                    or self._deferred >= MAX_DEFERRED_STEPS):
                return False
        self._deferred += 1
        return True

    def _decoder_for(self, batch: KvBatch) -> tuple[Forward, dict[str, object]]:
        """The lean decode step when every row is a base-model row, else the model with per-row adapters."""
        if self._lean is not None and all(name == BASE_ADAPTER for name in batch.adapter_names):
            return self._lean, {}
        return self.adapters.run, {"adapter_names": batch.adapter_names}

    def _take_work(self) -> list[Sequence]:
        """Apply cancellations, then pop as many queued sequences as the batch has room for."""
        with self._cond:
            endings, self._endings = self._endings, {}
            ended = [s for s in self._pending if s.request_id in endings]
            for seq in ended:
                self._pending.remove(seq)
            newcomers = self._pending.newcomers(self._batch.seqs if self._batch is not None else [],
                                                self._prefill_tokens)
        batch = self._batch
        running = [s for s in batch.seqs if s.request_id in endings] if batch is not None else []
        for seq in [*ended, *running]:
            reason, error = endings[seq.request_id]
            seq.finish(reason, error=error)
        if batch is not None and running:
            self._drop_finished(batch)
        return newcomers

    def _admit(self, newcomers: list[Sequence]) -> None:
        """Prefill the sequences that can run, emit their first token and merge them into the batch.

        Each row starts from its own cached prefix. Base-model rows run as one packed sequence; an admission
        with adapter rows runs left-padded, in as few passes as ``prefill_groups`` allows."""
        ready = [s for s in newcomers if self._check(s)]
        if not ready:
            return
        self._admitting = ready
        self._served = True
        hits = {id(seq): None if seq.request.adapter else self._prefixes.lookup(seq.request.prompt_ids)
                for seq in ready}

        def prefix(rows: list[Sequence]) -> Prefix | None:
            return Prefix.of([hit.states if (hit := hits[id(seq)]) is not None else None for seq in rows])

        if not any(seq.request.adapter for seq in ready):
            self._prefill_group(ready, prefix(ready), packed=True)
        else:
            for rows in prefill_groups(ready, {key: hit.tokens for key, hit in hits.items() if hit is not None}):
                self._prefill_group(rows, prefix(rows))
        self._admitting = []

    def _prefill_group(self, rows: list[Sequence], prefix: Prefix | None, *, packed: bool = False) -> None:
        try:
            extra = {"adapter_names": [BASE_ADAPTER] if packed else [s.adapter_name for s in rows]}
            if packed:
                fresh, logits = KvBatch.prefill_packed(self.adapters.run, rows, self._device, extra, prefix)
            else:
                fresh, logits = KvBatch.prefill(self.adapters.run, rows, self._pad_id, self._device, extra, prefix)
            picks = fresh.plan.sample(logits)
        except Exception as exc:
            log.exception("prefill_failed", rows=len(rows))
            for seq in rows:
                seq.finish("error", error=f"prefill failed: {exc}")
            return
        lengths = prefix.lengths if prefix is not None else [0] * len(rows)
        for row, seq in enumerate(rows):
            seq.cached_tokens = lengths[row]
            if not seq.request.adapter and self._prefixes.wants(seq.request.prompt_ids, start=lengths[row]):
                self._prefixes.store(seq.request.prompt_ids, fresh.row_states(row), start=lengths[row])
        with self._cond:
            self._counters["prompt_tokens_total"] += sum(len(s.request.prompt_ids) for s in rows)
            self._counters["prefill_passes_total"] += 1
        self._accept(fresh, picks)
        if len(fresh) and self._batch is not None:
            self._batch.merge(fresh)
        elif len(fresh):
            self._batch = fresh

    def _check(self, seq: Sequence) -> bool:
        """Refuse what cannot run (ending it at once); count a use of its adapter."""
        prompt_len = len(seq.request.prompt_ids)
        adapter = seq.request.adapter
        if prompt_len == 0 or prompt_len >= self._context:
            seq.finish("error", error=f"a prompt of {prompt_len} tokens does not fit the context")
        elif adapter and adapter not in self.adapters:
            seq.finish("error", error=f"adapter '{adapter}' is not attached")
        elif seq.max_tokens <= 0:
            seq.finish("length")
        else:
            if adapter:
                self.adapters.touch(adapter)
            return True
        return False

    def _accept(self, batch: KvBatch, picks: Picks) -> None:
        """Hand each row its token (emitting text or a final delta), then drop finished rows."""
        tokens = picks.tokens
        batch.set_next(tokens)
        for seq, token, logprob in zip(batch.seqs, tokens, picks.logprobs, strict=True):
            try:
                seq.accept(token, logprob)
            except Exception as exc:
                log.exception("token_accept_failed", request_id=seq.request_id)
                seq.finish("error", error=str(exc))
        with self._cond:
            self._counters["tokens_generated_total"] += len(tokens)
        self._drop_finished(batch)

    def _drop_finished(self, batch: KvBatch) -> None:
        keep = [row for row, seq in enumerate(batch.seqs) if not seq.finished]
        finished = len(batch) - len(keep)
        if not finished:
            return
        with self._cond:
            self._counters["sequences_finished_total"] += finished
        if keep:
            batch.keep(keep)
        elif batch is self._batch:
            self._batch = None
        else:
            batch.seqs = []

    def _fail_batch(self, exc: Exception) -> None:
        """After an unexpected failure, end every running sequence with an error and drop the cache."""
        batch, self._batch = self._batch, None
        admitting, self._admitting = self._admitting, []
        for seq in admitting + (batch.seqs if batch is not None else []):
            seq.finish("error", error=f"decode failed: {exc}")

    def _shutdown(self) -> None:
        with self._cond:
            pending = self._pending.drain()
        batch, self._batch = self._batch, None
        for seq in pending + (batch.seqs if batch is not None else []):
            seq.finish("error", error="the model was unloaded")

