"""The memory policy on its own: which idle models make room, and when the pool must refuse."""

from __future__ import annotations

import pytest

from meterway.errors import ModelOverloaded, Unavailable
from models.pool.api import ModelState
from models.pool.memory import estimate_bytes
from models.pool.residency import Resident, choose_victims
from tests.pool.conftest import MINILM, SMOLLM

MB = 1 << 20


def resident(specs, footprint_mb: int, *, state=ModelState.READY, admitted=0, last_used=0.0) -> Resident:
    return Resident(specs[SMOLLM], footprint_mb * MB, state=state, admitted=admitted, last_used=last_used)


def test_least_recently_used_idle_models_go_first_and_only_as_many_as_needed(specs) -> None:
    old, newer, newest = (resident(specs, 300, last_used=t) for t in (1.0, 2.0, 3.0))
    newcomer = resident(specs, 500, state=ModelState.COLD)

    assert choose_victims(newcomer, [newest, old, newer, newcomer], 1000 * MB) == [old, newer]


def test_busy_and_loading_models_are_never_chosen(specs) -> None:
    busy = resident(specs, 400, admitted=1, last_used=0.0)
    loading = resident(specs, 400, state=ModelState.LOADING)
    newcomer = resident(specs, 300, state=ModelState.COLD)

    with pytest.raises(ModelOverloaded) as caught:
        choose_victims(newcomer, [busy, loading, newcomer], 1000 * MB)
    assert caught.value.retry_after


def test_a_model_larger_than_the_whole_budget_is_unavailable_not_retryable(specs) -> None:
    with pytest.raises(Unavailable):
        choose_victims(resident(specs, 2000, state=ModelState.COLD), [], 1000 * MB)


def test_bfloat16_is_estimated_at_half_the_float32_weights(store_dir) -> None:
    no_cache = {"prefix_cache_mb": "0"}
    fp32 = estimate_bytes(store_dir / SMOLLM, "float32", task="chat", extra=no_cache)
    bf16 = estimate_bytes(store_dir / SMOLLM, "bfloat16", task="chat", extra=no_cache)
    weights = (store_dir / SMOLLM / "model.safetensors").stat().st_size
    tied_head = 49152 * 576 * 4  # SmolLM2's LM head shares the embedding; the engine packs a copy

    assert weights + tied_head < fp32 < 1.2 * weights + tied_head + 64 * MB
    assert abs(2 * bf16 - fp32) < 64 * MB


def test_a_chat_models_prefix_cache_counts_against_the_budget(store_dir) -> None:
    def estimate(extra: dict[str, str]) -> int:
        return estimate_bytes(store_dir / SMOLLM, "float32", task="chat", extra=extra)

    assert estimate({"prefix_cache_mb": "100"}) - estimate({"prefix_cache_mb": "0"}) == 100 * MB
    assert estimate({}) - estimate({"prefix_cache_mb": "0"}) == 64 * MB  # the engine's default


def test_an_embedding_model_has_no_head_copy_or_prefix_cache(store_dir) -> None:
    weights = (store_dir / MINILM / "model.safetensors").stat().st_size
    assert weights < estimate_bytes(store_dir / MINILM, "float32") < 1.2 * weights + 64 * MB
