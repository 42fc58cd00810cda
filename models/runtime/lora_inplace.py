"""Adding a plain LoRA adapter to LoRA layers that already exist, without peft's whole-model walks.

peft's ``load_adapter`` walks every module of the model several times per adapter (matching targets, marking
trainable parameters, tied modules, key remapping): most of an attach on a small base. When an earlier
adapter has already wrapped every module this one targets, adding it is one ``update_layer`` and two weight
copies per layer. Anything unusual (patterns, DoRA, extra modules, a key or shape that does not line up)
returns False and the caller takes peft's own path, so the result is always what peft would have built.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

# LoraConfig fields that make an adapter more than "rank-r A and B on named Linear modules".
_SPECIAL_FIELDS = ("rank_pattern", "alpha_pattern", "use_dora", "lora_bias", "modules_to_save",
                   "layers_to_transform", "layers_pattern", "use_qalora", "arrow_config",
                   "alora_invocation_tokens", "trainable_token_indices", "target_parameters", "exclude_modules",
                   "layer_replication", "megatron_config", "use_bdlora")


def plain_lora_config(path: str) -> Any | None:
    """The adapter's ``LoraConfig`` if it is a plain LoRA over a list of module names, else None."""
    from peft import LoraConfig, PeftType

    config = LoraConfig.from_pretrained(path)
    if config.peft_type != PeftType.LORA or not isinstance(config.target_modules, (list, set)):
        return None
    if any(getattr(config, name, None) for name in _SPECIAL_FIELDS):
        return None
    return config


def targeted_layers(peft_model: Any, targets: set[str]) -> dict[str, Any] | None:
    """Module name -> LoRA layer for every module the targets name; None if one is not a LoRA layer yet."""
    from peft.tuners.lora import LoraLayer

    found = {name: module for name, module in peft_model.named_modules()
             if name.rpartition(".")[2] in targets}
    if not found or not all(isinstance(module, LoraLayer) for module in found.values()):
        return None
    return found


def _fits(layers: dict[str, Any], state: dict[str, torch.Tensor], rank: int) -> bool:
    """Whether the saved tensors are exactly one A and one B of the right shapes per layer."""
    if set(state) != {f"{name}.lora_{part}.weight" for name in layers for part in "AB"}:
        return False
    return all(state[f"{name}.lora_A.weight"].shape == (rank, layer.in_features)
               and state[f"{name}.lora_B.weight"].shape == (layer.out_features, rank)
               for name, layer in layers.items())


def attach_in_place(peft_model: Any, name: str, path: str) -> bool:
    """Add adapter ``name`` from ``path`` to existing LoRA layers; False when peft's path is needed."""
    from safetensors.torch import load_file

    config = plain_lora_config(path)
    if config is None:
        return False
    layers = targeted_layers(peft_model, set(config.target_modules))
    weights = Path(path) / "adapter_model.safetensors"
    if layers is None or not weights.exists():
        return False
    state = load_file(str(weights))
    if not _fits(layers, state, config.r):
        return False
    # Weights come from the file: skip peft's initialisation; inference only.
    quiet = dataclasses.replace(config, init_lora_weights=False, inference_mode=True)
    with torch.no_grad():
        for module_name, layer in layers.items():
            layer.update_layer(name, config.r, config.lora_alpha, quiet)
            for part in ("A", "B"):
                getattr(layer, f"lora_{part}")[name].weight.copy_(state[f"{module_name}.lora_{part}.weight"])
            layer.lora_dropout[name].eval()  # new modules start in training mode: no dropout when serving
    peft_model.peft_config[name] = config
    return True
