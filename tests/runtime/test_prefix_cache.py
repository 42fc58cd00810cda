"""Automatic prefix caching: cached blocks are found by their exact tokens, reused, and change no output."""

from __future__ import annotations

from typing import Any

import torch

from models.runtime.prefix_cache import PrefixCache
from tests.runtime.conftest import Stream, chat, request, run

LAYERS, HEADS, DIM = 2, 3, 4


def states_for(prompt: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake per-layer keys/values whose every column records the token it belongs to."""
    column = torch.tensor(prompt, dtype=torch.float32)[None, :, None].expand(HEADS, len(prompt), DIM)
    return [(column + layer, -column - layer) for layer in range(LAYERS)]


def test_the_longest_run_of_blocks_is_found_and_the_last_token_is_left_to_compute() -> None:
    cache = PrefixCache(block_tokens=4)
    prompt = tuple(range(100, 111))  # 11 tokens: blocks [0, 4) and [4, 8) can be kept, [8, 11) holds the last
    cache.store(prompt, states_for(prompt))
    assert len(cache) == 3  # the two blocks and the prompt's tail, [8, 10)

    hit = cache.lookup((*prompt[:9], 999, 998))  # shares 9 tokens: two whole blocks
    assert hit is not None and hit.tokens == 8
    keys, values = hit.states[1]
    assert keys.shape == (HEADS, 8, DIM)
    assert torch.equal(keys[0, :, 0], torch.tensor(prompt[:8], dtype=torch.float32) + 1)
    assert torch.equal(values, -keys)
    assert cache.lookup(prompt[:8]).tokens == 4  # an 8-token prompt must compute its last token itself
    assert cache.lookup((100, 101, 102, 7, 104, 105, 106, 107, 108)) is None  # the first block differs
    assert (cache.hits, cache.tokens_reused) == (2, 12)


def test_the_same_prompt_again_computes_only_its_last_token() -> None:
    cache = PrefixCache(block_tokens=4)
    prompt = tuple(range(100, 111))
    cache.store(prompt, states_for(prompt))
    again = cache.lookup(prompt)
    assert again is not None and again.tokens == 10
    assert torch.equal(again.states[0][0][0, :, 0], torch.tensor(prompt[:10], dtype=torch.float32))
    other_last = cache.lookup((*prompt[:10], 7))  # only the last token differs: the same 10 are reused
    assert other_last is not None and other_last.tokens == 10
    longer = cache.lookup((*prompt, 112))  # the tail is this prompt's block [8, 12) only in part: not used
    assert longer is not None and longer.tokens == 8


def test_a_block_is_found_only_after_the_same_tokens() -> None:
    cache = PrefixCache(block_tokens=2)
    first = (1, 2, 3, 4, 5)
    cache.store(first, states_for(first))
    assert cache.lookup((9, 9, 3, 4, 5)) is None  # block [2, 4) matches, but not what precedes it


def test_blocks_are_evicted_from_the_end_of_a_run_past_the_budget() -> None:
    block_bytes = 2 * LAYERS * HEADS * 2 * DIM * 4  # keys and values, 2 tokens
    cache = PrefixCache(block_tokens=2, max_bytes=3 * block_bytes)
    old = (1, 2, 3, 4, 5, 6, 7)  # three blocks
    cache.store(old, states_for(old))
    new = (8, 9, 10)  # one block
    cache.store(new, states_for(new))
    assert cache.nbytes <= 3 * block_bytes
    assert cache.lookup(old).tokens == 4  # the run lost its last block, not its first
    assert cache.lookup(new).tokens == 2


def test_a_zero_budget_keeps_nothing() -> None:
    cache = PrefixCache(block_tokens=2, max_bytes=0)
    prompt = (1, 2, 3, 4, 5)
    cache.store(prompt, states_for(prompt))
    assert len(cache) == 0 and cache.lookup(prompt) is None


def test_prompts_sharing_the_system_prompt_reuse_it_and_decode_as_transformers_does(
        generator: Any, tokenizer: Any, reference_model: Any) -> None:
    first = chat(tokenizer, "Name a large animal that lives in the ocean.")
    second = chat(tokenizer, "Name a small bird that sings in the morning.")
    run(generator, request("prefix-first", first, max_tokens=4))
    before = generator.stats()

    stream = run(generator, request("prefix-second", second, max_tokens=16))

    after = generator.stats()
    assert after["prefix_cache_hits_total"] == before["prefix_cache_hits_total"] + 1
    reused = after["prefix_cache_tokens_reused_total"] - before["prefix_cache_tokens_reused_total"]
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert 0 < reused <= shared  # whole blocks of the shared system prompt, nothing of the question
    with torch.inference_mode():
        out = reference_model.generate(torch.tensor([second]), max_new_tokens=16, do_sample=False)
    assert stream.text == tokenizer.decode(out[0, len(second):], skip_special_tokens=True)
    assert stream.deltas[-1].prompt_tokens == len(second)  # billing still counts the whole prompt
    assert {d.cached_tokens for d in stream.deltas} == {reused}  # what usage reports as cached


def test_a_burst_hitting_the_cache_at_different_lengths_is_prefilled_in_one_pass(
        smollm_dir: Any, tokenizer: Any, reference_model: Any) -> None:
    """A whole earlier prompt, a prompt sharing only the system prompt and a prompt never seen arrive together:
    one forward pass computes what each lacks, and each decodes as transformers does alone."""
    from tokenizers import Tokenizer

    from models.runtime.generator import BatchingGenerator

    # Arrivals up to 0.25 s apart count as one burst here, so the test does not depend on the machine's speed.
    engine = BatchingGenerator(reference_model, Tokenizer.from_file(str(smollm_dir / "tokenizer.json")),
                               eos_ids=frozenset({2}), pad_id=2, context_length=8192, gather_gap_s=0.25,
                               gather_max_s=0.25)
    seen = chat(tokenizer, "Name a large animal that lives in the ocean.")
    prompts = [seen, chat(tokenizer, "Tell me about Rome."),
               tuple(tokenizer("Once upon a time, in a land far away,")["input_ids"])]
    try:
        run(engine, request("earlier", seen, max_tokens=2))
        before = engine.stats()["prefill_passes_total"]
        streams = [Stream() for _ in prompts]
        for k, (ids, stream) in enumerate(zip(prompts, streams, strict=True)):
            engine.submit(request(f"burst{k}", ids, max_tokens=8), stream)
        texts = [s.wait() and s.text for s in streams]
        passes = engine.stats()["prefill_passes_total"] - before
    finally:
        engine.close()
    assert passes == 1
    cached = [s.deltas[-1].cached_tokens for s in streams]
    assert cached[0] > cached[1] > cached[2] == 0  # the whole earlier prompt, the system prompt, nothing
    with torch.inference_mode():
        expected = [tokenizer.decode(reference_model.generate(torch.tensor([ids]), max_new_tokens=8,
                                                              do_sample=False)[0, len(ids):],
                                     skip_special_tokens=True) for ids in prompts]
    assert texts == expected
