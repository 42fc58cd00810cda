"""The lean decode step computes what transformers' forward computes, and the engine uses it for base rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from models.runtime.batch import KvBatch
from models.runtime.kvcache import layer_states, new_cache
from models.runtime.lean_decode import LeanDecoder
from tests.runtime.conftest import chat, request

if TYPE_CHECKING:
    from models.runtime.sequence import Sequence


def _prefilled(model: Any, prompts: list[tuple[int, ...]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """A left-padded prefill of ``prompts``: its cache, the 2D mask and each row's next position."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), 2, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = True
    cache = new_cache()
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, cache=cache, use_cache=True)
    return cache, mask, mask.sum(-1)


def _clone(cache: Any) -> Any:
    return new_cache([(k.clone(), v.clone()) for k, v in layer_states(cache)])


def test_lean_steps_match_the_stock_forward_on_a_padded_batch(reference_model: Any, tokenizer: Any) -> None:
    lean = LeanDecoder.for_model(reference_model)
    assert lean is not None
    prompts = [chat(tokenizer, "Hi"), chat(tokenizer, "Tell me about the history of the Roman Empire.")]
    with torch.inference_mode():
        stock_cache, mask, positions = _prefilled(reference_model, prompts)
        lean_cache = _clone(stock_cache)
        tokens = torch.tensor([[42], [1337]])
        for _ in range(4):  # several steps: the caches grow and must stay equal
            mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=torch.bool)], dim=1)
            inputs = {"input_ids": tokens, "attention_mask": mask[:, None, None, :],
                      "position_ids": positions[:, None]}
            stock = reference_model(**inputs, cache=stock_cache, use_cache=True, logits_to_keep=1).logits
            mine = lean(**inputs, cache=lean_cache).logits
            torch.testing.assert_close(mine, stock, rtol=1e-5, atol=1e-4)
            assert torch.equal(mine.argmax(-1), stock.argmax(-1))
            tokens, positions = stock.argmax(-1), positions + 1
        for (k1, v1), (k2, v2) in zip(layer_states(stock_cache), layer_states(lean_cache), strict=True):
            torch.testing.assert_close(k1, k2, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-5)


def test_only_known_architectures_get_a_lean_decoder() -> None:
    assert LeanDecoder.for_model(torch.nn.Linear(4, 4)) is None


def test_the_engine_decodes_base_rows_lean_and_adapter_rows_through_peft(generator: Any, tokenizer: Any) -> None:
    base = generator._decoder_for(_batch_of(generator, [None], tokenizer))
    assert isinstance(base[0], LeanDecoder) and base[1] == {}
    mixed = generator._decoder_for(_batch_of(generator, [None, "someone-lora"], tokenizer))
    assert mixed[0] == generator.adapters.run and mixed[1] == {"adapter_names": ["__base__", "someone-lora"]}


def _batch_of(generator: Any, adapters: list[str | None], tokenizer: Any) -> KvBatch:
    from models.runtime.sampling import row_sampling
    from models.runtime.sequence import Sequence

    seqs: list[Sequence] = []
    for i, a in enumerate(adapters):
        req = request(f"r{i}", chat(tokenizer, "Hi"), adapter=a)
        seqs.append(Sequence(req, lambda _d: None, tokenizer=generator._tokenizer, eos_ids=frozenset({2}),
                             max_tokens=4, sampling=row_sampling(req.params, torch.device("cpu"))))
    mask = torch.ones(len(seqs), 3, dtype=torch.bool)
    return KvBatch(seqs, new_cache(), mask, torch.full((len(seqs),), 3))
