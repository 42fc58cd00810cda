"""all-MiniLM-L6-v2 through the runtime: mean-pooled, normalised, batched exactly like one at a time."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The stock market fell sharply today.",
             "Short", "A considerably longer sentence, so that the batch really needs padding to line up."]


@pytest.fixture(scope="module")
def minilm_dir(store_dir: Path) -> Path:
    return store_dir / "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def embedder(minilm_dir: Path) -> Iterator[Any]:
    from models.runtime import load
    from models.runtime.api import LoadSpec

    loaded = load(LoadSpec("all-minilm-l6-v2", str(minilm_dir), "embedding"))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def encoded(minilm_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    return [list(tokenizer(s)["input_ids"]) for s in SENTENCES]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_related_sentences_are_closer(embedder: Any, encoded: list[list[int]]) -> None:
    result = embedder.embed(encoded)
    food, bread, stocks = result.vectors[:3]
    assert all(math.isclose(_cosine(v, v), 1.0, abs_tol=1e-5) for v in result.vectors)
    assert len(food) == 384
    assert _cosine(food, bread) > 0.5 > _cosine(food, stocks)
    assert result.prompt_tokens == sum(len(ids) for ids in encoded)


def test_batched_equals_a_plain_unbatched_computation(embedder: Any, encoded: list[list[int]],
                                                      minilm_dir: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm_dir, dtype=torch.float32).eval()
    batched = embedder.embed(encoded).vectors
    for ids, vector in zip(encoded, batched, strict=True):
        with torch.inference_mode():
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        expected = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0)
        assert torch.allclose(torch.tensor(vector), expected, atol=1e-5)


def test_empty_request_and_too_long_input(embedder: Any) -> None:
    from meterway.errors import ContextTooLong

    assert embedder.embed([]).vectors == []
    with pytest.raises(ContextTooLong):
        embedder.embed([[101] + [1000] * 600 + [102]])
