"""Models built from the store by assigning its tensors (``assign_from_store``) are the models
``from_pretrained`` builds, and checkpoints that need renaming are left to ``from_pretrained``."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import pytest

from tests.runtime.conftest import MINILM

if TYPE_CHECKING:
    from pathlib import Path

torch = pytest.importorskip("torch")

IDS = [[1, 504, 3456, 28, 1174, 30, 17, 2]]


def test_chat_model_matches_from_pretrained(smollm_dir: Path, reference_model: Any) -> None:
    from transformers import AutoModelForCausalLM

    from models.runtime.weights import assign_from_store

    model = assign_from_store(AutoModelForCausalLM, smollm_dir, torch.float32, torch.device("cpu"))
    assert model is not None
    assert not model.training
    # The LM head shares the embedding's storage, as in the checkpoint's config.
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.generation_config.eos_token_id == reference_model.generation_config.eos_token_id
    ids = torch.tensor(IDS)
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, reference_model(ids).logits)


def test_bfloat16_entry_is_converted(smollm_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from models.runtime.weights import assign_from_store

    model = assign_from_store(AutoModelForCausalLM, smollm_dir, torch.bfloat16, torch.device("cpu"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_embedding_model_matches_from_pretrained(store_dir: Path) -> None:
    from transformers import AutoModel

    from models.runtime.weights import assign_from_store

    path = store_dir / MINILM
    model = assign_from_store(AutoModel, path, torch.float32, torch.device("cpu"))
    reference = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor(IDS)
    with torch.inference_mode():
        assert torch.equal(model(ids).last_hidden_state, reference(ids).last_hidden_state)


def test_checkpoint_needing_renames_is_left_to_from_pretrained(store_dir: Path, tmp_path: Path) -> None:
    """Keys with another prefix (as a checkpoint saved from a task head has them) do not map one to one."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    from models.runtime.weights import WEIGHTS_FILE, assign_from_store

    copy = tmp_path / "renamed"
    shutil.copytree(store_dir / MINILM, copy)
    renamed = {f"bert.{name}": tensor for name, tensor in load_file(copy / WEIGHTS_FILE).items()}
    save_file(renamed, copy / WEIGHTS_FILE)
    assert assign_from_store(AutoModel, copy, torch.float32, torch.device("cpu")) is None
    (copy / WEIGHTS_FILE).rename(copy / "model-00001-of-00001.safetensors")
    assert assign_from_store(AutoModel, copy, torch.float32, torch.device("cpu")) is None
