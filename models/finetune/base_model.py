"""What an upload is checked against: the base model's config and tensor table, read from the store.

Only ``config.json`` and the safetensors headers are read (a few KB), never the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterway.errors import UploadRejected
from models.finetune.safetensors_header import TensorInfo, read_header
from models.store.layout import is_imported, model_dir

if TYPE_CHECKING:
    from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "chat_template.jinja",
    "generation_config.json",
)


@dataclass(frozen=True)
class BaseModel:
    """A catalog model's architecture as its files describe it."""

    name: str
    directory: Path
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]

    def linear_shape(self, module: str) -> tuple[int, int] | None:
        """``(out_features, in_features)`` of the linear layer ``module``, or None when there is none."""
        weight = self.tensors.get(f"{module}.weight")
        if weight is None and module == "lm_head" and self.config.get("tie_word_embeddings"):
            weight = self.tensors.get("model.embed_tokens.weight")
        if weight is None or len(weight.shape) != 2:
            return None
        return weight.shape[0], weight.shape[1]

    def tokenizer_files(self) -> list[Path]:
        """The base's tokenizer and chat template files, inherited by full fine-tunes that ship none."""
        return [self.directory / n for n in TOKENIZER_FILES if (self.directory / n).is_file()]


def load_base(store: Path, name: str) -> BaseModel:
    """Read base model ``name`` from the store; ``UploadRejected`` when it is not an imported chat model."""
    directory = model_dir(store, name)
    if not is_imported(store, name) or not (directory / "config.json").is_file():
        raise UploadRejected(f"base model {name!r} is not available in the model store", param="base")
    config = json.loads((directory / "config.json").read_text())
    tensors: dict[str, TensorInfo] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        tensors.update(read_header(shard))
    return BaseModel(name, directory, config, tensors)
