"""Build a model straight from its store directory: ``assign_from_store``.

``from_pretrained`` in transformers 5 is general: it matches every checkpoint key against the model's
renaming and conversion rules (a regular expression per weight) and initialises each module's weights
before overwriting them. For a checkpoint our own importer wrote (one ``model.safetensors`` whose keys are
the model's own) that is ~0.25 s of a ~0.4 s load on two cores, most of a cold start. Here the model is
built with its weights on the meta device and no initialisation, and the mmap-read tensors are assigned to
it as they are: ~0.03 s. Anything else (sharded weights, keys that need renaming, a tenant's checkpoint
from another tool) is left to ``from_pretrained``: this returns ``None`` for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

WEIGHTS_FILE = "model.safetensors"


def assign_from_store(auto_class: Any, path: str | Path, dtype: torch.dtype, device: torch.device) -> Any:
    """The model at ``path`` (``auto_class`` is e.g. ``AutoModelForCausalLM``), or ``None`` when its
    checkpoint is not one that maps onto the model key for key."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.initialization import no_init_weights

    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        return None
    config = AutoConfig.from_pretrained(path)
    # Parameters on meta, buffers (rotary frequencies) computed as usual; no random initialisation.
    with init_empty_weights(include_buffers=False), no_init_weights():
        model = auto_class.from_config(config, dtype=dtype)
    state = _as_dtype(load_file(str(weights), device=str(device)), dtype)
    result = model.load_state_dict(state, strict=False, assign=True)
    # Tied weights (the LM head) are tied below; buffers the model computes itself (BERT's position ids)
    # may be in an older checkpoint and are left as computed.
    tied = set(model.get_expanded_tied_weights_keys(all_submodels=True))
    buffers = {name for name, _ in model.named_buffers()}
    if set(result.unexpected_keys) - buffers or set(result.missing_keys) - tied:
        return None
    model.tie_weights()
    if any(parameter.is_meta for parameter in model.parameters()):
        return None
    model.to(device)
    _read_generation_config(model, Path(path))
    return model.eval()


def _as_dtype(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors in the served precision (a copy only where it differs); others as stored."""
    return {name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def _read_generation_config(model: Any, path: Path) -> None:
    """A generative model's sampling defaults and EOS ids, as ``from_pretrained`` reads them."""
    if not (path / "generation_config.json").is_file() or not hasattr(model, "generation_config"):
        return
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig.from_pretrained(path)
