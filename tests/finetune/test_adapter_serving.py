"""An uploaded adapter, as stored, serves in the runtime exactly like peft offline, and unlike the base."""

from __future__ import annotations

import shutil
import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.finetune.conftest import BASE, UploadServer, dir_files, lora_fields, multipart

if TYPE_CHECKING:
    from pathlib import Path

PROMPT = "The support bot answers:"
TOKENS = 12


def engine_text(generator: Any, prompt_ids: tuple[int, ...], adapter: str | None) -> str:
    """Greedy completion from the runtime's continuous-batching engine."""
    from models.runtime.api import GenerationRequest, SamplingParams

    pieces: list[str] = []
    finished = threading.Event()

    def emit(delta: Any) -> None:
        pieces.append(delta.text)
        if delta.finish_reason:
            assert delta.error is None, delta.error
            finished.set()

    request = GenerationRequest(f"r-{adapter}", prompt_ids, SamplingParams(max_tokens=TOKENS, temperature=0),
                                adapter=adapter)
    generator.submit(request, emit)
    assert finished.wait(300), "generation did not finish"
    return "".join(pieces)


def peft_text(base_dir: Path, adapter_dir: Path, prompt_ids: tuple[int, ...]) -> str:
    """The same greedy completion with peft's own loading of the uploaded adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                      adapter_dir)
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=TOKENS,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


def scaled_copy(adapter: Path, target: Path, factor: float) -> Path:
    """Another adapter of the same shape: ``adapter`` with its B matrices scaled by ``factor``."""
    from safetensors.torch import load_file, save_file

    target.mkdir()
    shutil.copy(adapter / "adapter_config.json", target)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({k: v * factor if "lora_B" in k else v for k, v in tensors.items()},
              str(target / "adapter_model.safetensors"))
    return target


@pytest.mark.slow
def test_stored_adapter_serves_like_peft_offline(upload_server: UploadServer, adapter_dir: Path,
                                                 store_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from models.runtime import load
    from models.runtime.api import LoadSpec

    with upload_server.client() as client:
        assert client.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(adapter_dir))
                           ).status_code == 201
    stored = next((upload_server.store / "finetunes" / "acme").glob("support-bot-*"))
    base_dir = store_dir / BASE
    prompt_ids = tuple(AutoTokenizer.from_pretrained(base_dir)(PROMPT)["input_ids"])
    other = scaled_copy(stored, tmp_path / "other", 3.0)
    generator = load(LoadSpec(BASE, str(base_dir), "chat", max_batch=4))
    try:
        # The first adapter wraps the base in peft; the second is added to the LoRA layers it made.
        generator.attach_adapter("other", str(other))
        generator.attach_adapter("support-bot", str(stored))
        tuned = engine_text(generator, prompt_ids, "support-bot")
        other_tuned = engine_text(generator, prompt_ids, "other")
        plain = engine_text(generator, prompt_ids, None)
    finally:
        generator.close()
    assert tuned == peft_text(base_dir, stored, prompt_ids)
    assert other_tuned == peft_text(base_dir, other, prompt_ids)
    assert len({tuned, other_tuned, plain}) == 3
