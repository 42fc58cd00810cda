"""Embeddings on their own worker, and LoRA fine-tunes served by their base model's worker."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import pytest

from meterway.errors import ModelOverloaded
from models.pool.api import EmbeddingJob, ModelState
from tests.pool.conftest import MINILM, SMOLLM, collect, job

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


async def test_embedding_counts_the_tokenizer_tokens(make_pool, specs, store_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(store_dir / MINILM / "tokenizer.json"))
    texts = ["The cat sails the sea.", "Invoices reconcile to the cent, every month."]
    inputs = tuple(tuple(tokenizer.encode(text).ids) for text in texts)
    pool = await make_pool()

    result = await pool.embed(EmbeddingJob("emb-1", specs[MINILM], inputs))

    assert result.prompt_tokens == sum(len(ids) for ids in inputs)
    assert len(result.vectors) == 2 and all(len(v) == 384 for v in result.vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in result.vectors)
    assert pool.state(MINILM) is ModelState.READY


@pytest.fixture(scope="module")
def lora_dir(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-8 PEFT LoRA of SmolLM2 with non-zero weights (so that it changes what the model says)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(store_dir / SMOLLM, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2)
    target = tmp_path_factory.mktemp("lora") / "cat-bot"
    peft_model.save_pretrained(target, safe_serialization=True)
    return target


async def test_lora_fine_tune_runs_on_its_base_worker_and_attaches_once(make_pool, specs, prompt_ids,
                                                                       lora_dir: Path) -> None:
    base = specs[SMOLLM]
    fine_tune = dataclasses.replace(base, id=f"ft:{SMOLLM}:acme:cat-bot", tenant="acme", base=SMOLLM,
                                    adapter_path=str(lora_dir))
    pool = await make_pool()

    tuned = await collect(pool, job(fine_tune, prompt_ids, max_tokens=8))
    again = await collect(pool, job(fine_tune, prompt_ids, max_tokens=8))
    plain = await collect(pool, job(base, prompt_ids, max_tokens=8))

    assert tuned[-1].finish_reason in {"length", "stop"} and again[-1].finish_reason in {"length", "stop"}
    assert "".join(d.text for d in tuned) == "".join(d.text for d in again)
    assert "".join(d.text for d in tuned) != "".join(d.text for d in plain)
    assert pool.metrics.value("meterway_pool_loads_total", model=SMOLLM) == 1
    assert pool.metrics.value("meterway_pool_adapter_loads_total", model=SMOLLM) == 1
    assert pool.metrics.value("meterway_pool_adapter_cache_hits_total", model=SMOLLM) == 1
    assert pool.state(fine_tune.id) is ModelState.READY


def fine_tune_of(base, name: str, adapter: Path):
    return dataclasses.replace(base, id=f"ft:{base.id}:acme:{name}", tenant="acme", base=base.id,
                               adapter_path=str(adapter))


async def test_adapter_slots_detach_the_idle_adapter_and_never_a_busy_one(make_pool, specs, prompt_ids,
                                                                         lora_dir: Path) -> None:
    base = dataclasses.replace(specs[SMOLLM], extra={"max_adapters": "1"})  # one slot on this worker
    first, second = fine_tune_of(base, "first", lora_dir), fine_tune_of(base, "second", lora_dir)
    pool = await make_pool(models=[base])

    assert (await collect(pool, job(first, prompt_ids)))[-1].finish_reason in {"length", "stop"}
    # "second" takes the only slot: "first" is detached.
    assert (await collect(pool, job(second, prompt_ids)))[-1].finish_reason in {"length", "stop"}
    busy = pool.generate(job(second, prompt_ids, max_tokens=200))
    await anext(busy)
    with pytest.raises(ModelOverloaded) as caught:
        await collect(pool, job(first, prompt_ids))  # the slot's adapter is in use
    await busy.aclose()
    deltas = await collect(pool, job(first, prompt_ids))

    assert caught.value.retry_after
    assert deltas[-1].finish_reason in {"length", "stop"}
    assert pool.metrics.value("meterway_pool_adapter_loads_total", model=SMOLLM) == 3
    assert pool.metrics.value("meterway_pool_loads_total", model=SMOLLM) == 1
