"""LoRA adapters on the loaded SmolLM2: attached in place, decoded in mixed batches, evicted by LRU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.runtime.conftest import Stream, chat, request, run

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


def _train_lora(base_dir: Path, out: Path, answer: str, tokenizer: Any) -> Path:
    """A few optimisation steps of a rank-8 LoRA so that the model's answer visibly changes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    messages = [{"role": "user", "content": QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tokenizer(prompt + answer + "<|im_end|>", add_special_tokens=False)["input_ids"]])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    peft_model.train()
    for _ in range(8):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_dirs(smollm_dir: Path, tokenizer: Any,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "lyon": _train_lora(smollm_dir, root / "lyon", "The capital of France is Lyon, famous for its food.",
                            tokenizer),
        "marseille": _train_lora(smollm_dir, root / "marseille", "Marseille! The port city of the south.",
                                 tokenizer),
    }


def _peft_greedy(smollm_dir: Path, adapter_dir: Path, ids: tuple[int, ...], tokenizer: Any) -> str:
    """What peft itself produces with this adapter, offline: the expected engine output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    return str(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))


def test_adapter_output_matches_peft_and_differs_from_base(generator: Any, tokenizer: Any, smollm_dir: Path,
                                                           adapter_dirs: dict[str, Path]) -> None:
    ids = chat(tokenizer, QUESTION)
    loads = generator.stats()["adapter_loads_total"]
    seconds = generator.attach_adapter("lyon", str(adapter_dirs["lyon"]))
    assert seconds > 0
    assert generator.stats()["adapter_loads_total"] == loads + 1
    base_text = run(generator, request("base", ids)).text
    lyon_text = run(generator, request("lyon", ids, adapter="lyon")).text
    assert lyon_text != base_text
    assert lyon_text == _peft_greedy(smollm_dir, adapter_dirs["lyon"], ids, tokenizer)
    hits = generator.stats()["adapter_cache_hits_total"]
    generator.attach_adapter("lyon", str(adapter_dirs["lyon"]))  # already there: a cache hit, no reload
    assert generator.stats()["adapter_cache_hits_total"] == hits + 1
    assert generator.stats()["adapter_loads_total"] == loads + 1


def test_base_and_adapters_share_one_batch(generator: Any, tokenizer: Any,
                                           adapter_dirs: dict[str, Path]) -> None:
    for name, path in adapter_dirs.items():
        generator.attach_adapter(name, str(path))
    prompts = [chat(tokenizer, QUESTION), chat(tokenizer, "Where is Paris?"), chat(tokenizer, QUESTION)]
    adapters = [None, "lyon", "marseille"]
    solo = [run(generator, request(f"solo{k}", ids, adapter=a)).text
            for k, (ids, a) in enumerate(zip(prompts, adapters, strict=True))]
    streams = [Stream() for _ in prompts]
    for k, (ids, adapter, stream) in enumerate(zip(prompts, adapters, streams, strict=True)):
        generator.submit(request(f"mixed{k}", ids, adapter=adapter), stream)
    assert [s.wait() and s.text for s in streams] == solo
    assert len(set(solo)) == 3


def test_detached_adapter_is_refused(generator: Any, tokenizer: Any, adapter_dirs: dict[str, Path]) -> None:
    generator.attach_adapter("gone", str(adapter_dirs["marseille"]))
    generator.detach_adapter("gone")
    stream = run(generator, request("gone", chat(tokenizer, QUESTION), adapter="gone"))
    assert stream.deltas[-1].finish_reason == "error"
    assert run(generator, request("still-base", chat(tokenizer, QUESTION), max_tokens=2)).text


def test_lru_evicts_the_least_recently_used_idle_adapter(smollm_dir: Path,
                                                         adapter_dirs: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from meterway.errors import ModelOverloaded
    from models.runtime.adapters import AdapterSet

    busy: set[str] = set()
    base = AutoModelForCausalLM.from_pretrained(smollm_dir, dtype=torch.float32)
    adapters = AdapterSet(base, max_adapters=2, in_use=lambda: busy)
    adapters.attach("a", str(adapter_dirs["lyon"]))
    adapters.attach("b", str(adapter_dirs["marseille"]))
    adapters.touch("a")  # b is now the least recently used
    adapters.attach("c", str(adapter_dirs["lyon"]))
    assert ("a" in adapters, "b" in adapters, "c" in adapters) == (True, False, True)
    busy.update({"a", "c"})
    with pytest.raises(ModelOverloaded):
        adapters.attach("d", str(adapter_dirs["lyon"]))
    busy.discard("a")
    adapters.attach("d", str(adapter_dirs["lyon"]))  # c is busy, so the idle a goes
    assert sorted(n for n in "abcd" if n in adapters) == ["c", "d"]
    assert adapters.evictions == 2


def test_a_sequence_after_an_eviction_uses_the_new_adapter(smollm_dir: Path, tokenizer: Any,
                                                           adapter_dirs: dict[str, Path]) -> None:
    """One slot: attaching a second adapter evicts the first, and later prefills still run (once a KeyError)."""
    from models.runtime import load
    from models.runtime.api import LoadSpec

    generator = load(LoadSpec("smollm2-135m-instruct", str(smollm_dir), "chat", max_batch=4,
                              extra={"max_adapters": "1"}))
    try:
        ids = chat(tokenizer, QUESTION)
        generator.attach_adapter("first", str(adapter_dirs["lyon"]))
        assert run(generator, request("first", ids, adapter="first")).deltas[-1].finish_reason in {"length", "stop"}
        generator.attach_adapter("second", str(adapter_dirs["marseille"]))
        second = run(generator, request("second", ids, adapter="second"))
        base = run(generator, request("base", ids))
        assert generator.stats()["adapter_evictions_total"] == 1
        assert second.text == _peft_greedy(smollm_dir, adapter_dirs["marseille"], ids, tokenizer)
        assert base.deltas[-1].finish_reason in {"length", "stop"}
        assert run(generator, request("first-again", ids, adapter="first")).deltas[-1].finish_reason == "error"
    finally:
        generator.close()
