"""The continuous-batching generator on the real SmolLM2: what a caller of the pool would see."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.runtime.conftest import Stream, chat, request, run

if TYPE_CHECKING:
    from models.runtime.api import TokenDelta

pytestmark = pytest.mark.slow

STORY = "Write a long story about a dragon who learns to cook."


def test_capital_of_france_greedy(generator: Any, tokenizer: Any) -> None:
    ids = chat(tokenizer, "What is the capital of France?")
    stream = run(generator, request("paris", ids, max_tokens=16))
    final = stream.deltas[-1]
    assert "Paris" in stream.text
    assert final.finish_reason == "stop"  # EOS, not emitted as text
    assert "<|im_end|>" not in stream.text
    assert final.prompt_tokens == len(ids)
    assert final.completion_tokens == len(tokenizer(stream.text, add_special_tokens=False)["input_ids"]) + 1
    assert [d.completion_tokens for d in stream.deltas] == sorted(d.completion_tokens for d in stream.deltas)


def test_max_tokens_ends_with_length(generator: Any, tokenizer: Any) -> None:
    stream = run(generator, request("len", chat(tokenizer, STORY), max_tokens=5))
    assert stream.deltas[-1].finish_reason == "length"
    assert stream.deltas[-1].completion_tokens == 5
    assert stream.text


def test_stop_string_cuts_the_text(generator: Any, tokenizer: Any) -> None:
    ids = chat(tokenizer, STORY)
    full = run(generator, request("full", ids, max_tokens=16)).text
    words = full.split()
    stop = f" {words[3]}"  # a word in the middle of the greedy text
    stopped = run(generator, request("stop", ids, max_tokens=16, stop=("never-there", stop)))
    assert stopped.deltas[-1].finish_reason == "stop"
    assert stopped.text == full[: full.index(stop)]
    assert stop not in stopped.text
    assert stopped.deltas[-1].completion_tokens >= 3  # the tokens generated still count


def test_same_seed_same_text_different_seed_differs(generator: Any, tokenizer: Any) -> None:
    ids = chat(tokenizer, STORY)
    first = run(generator, request("s1", ids, temperature=1.0, seed=7)).text
    again = run(generator, request("s2", ids, temperature=1.0, seed=7)).text
    other = run(generator, request("s3", ids, temperature=1.0, seed=8)).text
    assert first == again
    assert first != other


def test_seeded_text_does_not_depend_on_the_batch(generator: Any, tokenizer: Any) -> None:
    ids = chat(tokenizer, STORY)
    solo = run(generator, request("solo", ids, temperature=0.9, top_p=0.9, seed=3)).text
    neighbours = [Stream() for _ in range(3)]
    seeded = Stream()
    for k, stream in enumerate(neighbours):
        generator.submit(request(f"n{k}", chat(tokenizer, f"Count to {k + 5}."), temperature=1.0), stream)
    generator.submit(request("batched", ids, temperature=0.9, top_p=0.9, seed=3), seeded)
    seeded.wait()
    for stream in neighbours:
        stream.wait()
    assert seeded.text == solo


def test_cancel_mid_stream(generator: Any, tokenizer: Any) -> None:
    stream = Stream()

    def emit(delta: TokenDelta) -> None:
        stream(delta)
        if delta.text and not delta.finish_reason and len(stream.deltas) == 2:
            generator.cancel("cancel-me")

    generator.submit(request("cancel-me", chat(tokenizer, STORY), max_tokens=200), emit)
    final = stream.wait()
    assert final.finish_reason == "cancelled"
    assert 2 <= final.completion_tokens < 200
    assert sum(1 for d in stream.deltas if d.finish_reason) == 1


def test_newcomer_joins_the_running_batch(generator: Any, tokenizer: Any) -> None:
    order: list[str] = []
    lock = threading.Lock()
    late = Stream()

    def emit_first(delta: TokenDelta) -> None:
        with lock:
            order.append("A-final" if delta.finish_reason else "A")
        first(delta)
        if len(first.deltas) == 2:
            generator.submit(request("B", chat(tokenizer, "What is 2 + 2?"), max_tokens=4), emit_late)

    def emit_late(delta: TokenDelta) -> None:
        with lock:
            order.append("B-final" if delta.finish_reason else "B")
        late(delta)

    first = Stream()
    generator.submit(request("A", chat(tokenizer, STORY), max_tokens=16), emit_first)
    first.wait()
    late.wait()
    assert first.deltas[-1].completion_tokens == 16  # A ran to its limit ...
    assert order.index("B-final") < order.index("A-final")  # ... while B came, decoded and left


def test_batched_greedy_equals_solo(generator: Any, tokenizer: Any) -> None:
    questions = [STORY, "Hi", "Name three colours of the rainbow."]
    prompts = [chat(tokenizer, q) for q in questions]
    solo = [run(generator, request(f"solo{k}", ids)).text for k, ids in enumerate(prompts)]
    streams = [Stream() for _ in prompts]
    for k, (ids, stream) in enumerate(zip(prompts, streams, strict=True)):
        generator.submit(request(f"batch{k}", ids), stream)
    assert [s.wait() and s.text for s in streams] == solo


def test_arrivals_are_prefilled_in_slices_and_the_first_streams_at_once(smollm_dir: Any, tokenizer: Any,
                                                                        reference_model: Any) -> None:
    """With a budget of one prompt per step, the first arrival streams while later ones wait their turn."""
    from tokenizers import Tokenizer

    from models.runtime.generator import BatchingGenerator

    raw_tokenizer = Tokenizer.from_file(str(smollm_dir / "tokenizer.json"))
    sliced = BatchingGenerator(reference_model, raw_tokenizer, eos_ids=frozenset({2}), pad_id=2,
                               context_length=8192, prefill_tokens=1)
    prompts = [chat(tokenizer, q) for q in (STORY, "Describe the sea in many words.", "Tell me about Rome.")]
    order: list[str] = []
    streams = [Stream() for _ in prompts]
    try:
        solo = [run(sliced, request(f"solo{k}", ids, max_tokens=12)).text for k, ids in enumerate(prompts)]
        for k, (ids, stream) in enumerate(zip(prompts, streams, strict=True)):
            def emit(delta: TokenDelta, stream: Stream = stream, k: int = k) -> None:
                order.append(f"r{k}")
                stream(delta)
            sliced.submit(request(f"r{k}", ids, max_tokens=12), emit)
        texts = [s.wait() and s.text for s in streams]
    finally:
        sliced.close()
    assert texts == solo
    assert order.count("r0") >= 2 and order.index("r2") > [i for i, r in enumerate(order) if r == "r0"][1]


def test_streamed_text_equals_transformers_generate(generator: Any, tokenizer: Any,
                                                    reference_model: Any) -> None:
    import torch

    # Multi-byte characters arrive split over several tokens: the stream must still add up to the same text.
    ids = chat(tokenizer, "Write the word 'café' and a smiley emoji, then say hello in Japanese.")
    stream = run(generator, request("utf8", ids, max_tokens=16))
    with torch.inference_mode():
        out = reference_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    assert stream.text == tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    assert all(not d.text.endswith("\ufffd") for d in stream.deltas)


def test_unusable_requests_end_with_an_error(generator: Any, tokenizer: Any) -> None:
    unknown = run(generator, request("no-adapter", chat(tokenizer, "Hi"), adapter="missing"))
    assert unknown.deltas[-1].finish_reason == "error"
    assert "missing" in (unknown.deltas[-1].error or "")
    empty = run(generator, request("empty", ()))
    assert empty.deltas[-1].finish_reason == "error"
    # The loop still serves afterwards.
    assert run(generator, request("after", chat(tokenizer, "Hi"), max_tokens=2)).deltas[-1].completion_tokens


def test_completion_is_clipped_to_the_context(smollm_dir: Any, tokenizer: Any, reference_model: Any) -> None:
    from tokenizers import Tokenizer

    from models.runtime.generator import BatchingGenerator

    ids = chat(tokenizer, STORY)
    raw_tokenizer = Tokenizer.from_file(str(smollm_dir / "tokenizer.json"))
    small = BatchingGenerator(reference_model, raw_tokenizer, eos_ids=frozenset({2}), pad_id=2,
                              context_length=len(ids) + 3)
    try:
        stream = run(small, request("clip", ids, max_tokens=16))
    finally:
        small.close()
    assert stream.deltas[-1].finish_reason == "length"
    assert stream.deltas[-1].completion_tokens == 3


def test_stats_report_the_work_done(generator: Any, tokenizer: Any) -> None:
    before = generator.stats()
    run(generator, request("stats", chat(tokenizer, STORY), max_tokens=4))
    after = generator.stats()
    assert after["tokens_generated_total"] - before["tokens_generated_total"] == 4
    assert after["batch_size"] == 0 and after["queue_depth"] == 0


def test_rows_far_apart_in_length_are_prefilled_in_separate_passes() -> None:
    """Padding a 3-token remainder to 400 would cost far more than a second pass over the weights."""
    from types import SimpleNamespace

    from models.runtime.batch import prefill_groups

    rows = [SimpleNamespace(request=SimpleNamespace(prompt_ids=(1,) * n)) for n in (40, 3, 400, 30)]
    groups = prefill_groups(rows, {id(rows[0]): 32})  # the first has 32 tokens cached: 8 left to compute
    assert [[len(r.request.prompt_ids) for r in group] for group in groups] == [[3, 40, 30], [400]]
