"""Where each model's files live in the store, and whether an import is complete."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

COMPLETE_MARKER = ".meterway-complete"


def model_dir(store: Path, name: str) -> Path:
    """The directory holding one model's safetensors, config and tokenizer."""
    return store / name


def is_imported(store: Path, name: str) -> bool:
    """True once an import finished: the marker is written last, so a killed import is redone."""
    return (model_dir(store, name) / COMPLETE_MARKER).exists()
