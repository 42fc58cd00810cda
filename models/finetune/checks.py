"""Does an upload fit its base model? One check per fine-tune kind, chosen from a registry.

A LoRA adapter must name modules the base has, with ``lora_A: [r, in]`` and ``lora_B: [out, r]`` for each;
full weights must repeat the base's architecture tensor for tensor. Every failure is an ``UploadRejected``
that says what to fix, raised before anything leaves the staging area.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from meterway.errors import UploadRejected
from models.finetune.safetensors_header import FLOAT_DTYPES, TensorInfo, read_header

if TYPE_CHECKING:
    from models.finetune.base_model import BaseModel
    from models.finetune.limits import UploadLimits

Files = dict[PurePosixPath, Path]


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that fits its base: the files to store (own and inherited) and what was found."""

    kind: str
    files: Files
    inherited: Files = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class UploadCheck(Protocol):
    """Validation of one fine-tune kind against its base model."""

    def check(self, files: Files, base: BaseModel, limits: UploadLimits) -> CheckedUpload:
        """Return the accepted upload or raise ``UploadRejected``."""


def read_json(path: PurePosixPath, file: Path, limits: UploadLimits) -> Any:
    """Parse a (bounded) JSON file of the upload."""
    if file.stat().st_size > limits.max_json_bytes:
        raise UploadRejected(f"{path}: JSON file larger than {limits.max_json_bytes} bytes")
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UploadRejected(f"{path}: not valid JSON") from None


def check_every_file(files: Files, limits: UploadLimits) -> dict[PurePosixPath, dict[str, TensorInfo]]:
    """Every JSON file parses and every safetensors header is sound; returns the headers."""
    headers = {}
    for path, file in files.items():
        if path.suffix == ".json":
            read_json(path, file, limits)
        elif path.suffix == ".safetensors":
            headers[path] = read_header(file, max_header_bytes=limits.max_header_bytes)
    return headers


_LORA_TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")
_UNSUPPORTED_LORA = (
    "use_dora",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "trainable_token_indices",
    "target_parameters",
)


class LoraCheck:
    """A PEFT LoRA adapter: ``adapter_config.json`` + ``adapter_model.safetensors``."""

    def check(self, files: Files, base: BaseModel, limits: UploadLimits) -> CheckedUpload:
        headers = check_every_file(files, limits)
        config_path, weights_path = (
            PurePosixPath("adapter_config.json"),
            PurePosixPath("adapter_model.safetensors"),
        )
        for required in (config_path, weights_path):
            if required not in files:
                raise UploadRejected(f"a LoRA upload needs {required} (PEFT save_pretrained output)")
        if set(headers) != {weights_path}:
            raise UploadRejected("a LoRA upload holds exactly one weights file, adapter_model.safetensors")
        rank, targets = self._config(read_json(config_path, files[config_path], limits))
        modules = self._pairs(headers[weights_path], base, rank, targets)
        return CheckedUpload(
            "lora",
            files,
            summary={
                "r": rank,
                "modules": len(modules),
                "target_modules": sorted({m.rsplit(".", 1)[-1] for m in modules}),
            },
        )

    @staticmethod
    def _config(config: Any) -> tuple[int, Any]:
        if not isinstance(config, dict) or config.get("peft_type") != "LORA":
            raise UploadRejected("adapter_config.json: peft_type must be 'LORA'")
        rank = config.get("r")
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank <= 1024:
            raise UploadRejected(f"adapter_config.json: r must be an integer in 1..1024, got {rank!r}")
        if not isinstance(config.get("lora_alpha"), int | float) or isinstance(
            config.get("lora_alpha"), bool
        ):
            raise UploadRejected("adapter_config.json: lora_alpha must be a number")
        for key in _UNSUPPORTED_LORA:
            if config.get(key):
                raise UploadRejected(f"adapter_config.json: {key} is not supported for served adapters")
        targets = config.get("target_modules")
        if not (
            (isinstance(targets, str) and targets)
            or (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets))
        ):
            raise UploadRejected("adapter_config.json: target_modules must be a module list or a regex")
        return rank, targets

    def _pairs(self, tensors: dict[str, TensorInfo], base: BaseModel, rank: int, targets: Any) -> set[str]:
        found: dict[str, dict[str, TensorInfo]] = {}
        for name, tensor in tensors.items():
            match = _LORA_TENSOR.match(name)
            if match is None:
                raise UploadRejected(
                    f"adapter_model.safetensors: unexpected tensor {name!r} (only "
                    "base_model.model.<module>.lora_A/lora_B.weight)"
                )
            if tensor.dtype not in FLOAT_DTYPES:
                raise UploadRejected(f"adapter_model.safetensors: {name} has non-float dtype {tensor.dtype}")
            found.setdefault(match["module"], {})[match["ab"]] = tensor
        if not found:
            raise UploadRejected("adapter_model.safetensors holds no LoRA tensors")
        for module, pair in sorted(found.items()):
            self._check_module(module, pair, base, rank, targets)
        return set(found)

    @staticmethod
    def _check_module(
        module: str, pair: dict[str, TensorInfo], base: BaseModel, rank: int, targets: Any
    ) -> None:
        if not _targeted(module, targets):
            raise UploadRejected(f"adapter_model.safetensors: module {module!r} is not in target_modules")
        shape = base.linear_shape(module)
        if shape is None:
            raise UploadRejected(
                f"adapter module {module!r} does not exist in base model {base.name!r} "
                "(architecture mismatch)"
            )
        if set(pair) != {"A", "B"}:
            raise UploadRejected(f"adapter module {module!r} lacks lora_{'B' if 'A' in pair else 'A'}")
        out_features, in_features = shape
        if pair["A"].shape != (rank, in_features) or pair["B"].shape != (out_features, rank):
            raise UploadRejected(
                f"adapter module {module!r}: lora_A {list(pair['A'].shape)} / lora_B {list(pair['B'].shape)} "
                f"do not fit base {base.name!r} (expected [{rank}, {in_features}] / [{out_features}, {rank}] "
                f"for r={rank})"
            )


def _targeted(module: str, targets: Any) -> bool:
    """PEFT's rule: a list names module suffixes, a string is a regex over the full module name."""
    if isinstance(targets, str):
        return targets == "all-linear" or re.fullmatch(targets, module) is not None
    return any(module == t or module.endswith(f".{t}") for t in targets)


_ARCH_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
)


class FullWeightsCheck:
    """Full weights: ``config.json`` + ``*.safetensors`` matching the base; tokenizer shipped or inherited."""

    def check(self, files: Files, base: BaseModel, limits: UploadLimits) -> CheckedUpload:
        headers = check_every_file(files, limits)
        config_path = PurePosixPath("config.json")
        if config_path not in files or not headers:
            raise UploadRejected("a full-weights upload needs config.json and *.safetensors weights")
        self._config(read_json(config_path, files[config_path], limits), base)
        tensors = self._merged(headers)
        self._tensors(tensors, base)
        own = {p.name for p in files}
        inherited = (
            {}
            if {"tokenizer.json", "tokenizer.model"} & own
            else {PurePosixPath(f.name): f for f in base.tokenizer_files() if f.name not in own}
        )
        dtypes = sorted({t.dtype for t in tensors.values()})
        return CheckedUpload(
            "full",
            files,
            inherited,
            {"tensors": len(tensors), "dtypes": dtypes, "tokenizer": "inherited" if inherited else "own"},
        )

    @staticmethod
    def _config(config: Any, base: BaseModel) -> None:
        if not isinstance(config, dict):
            raise UploadRejected("config.json is not a JSON object")
        for key in ("model_type", "architectures", *_ARCH_KEYS):
            if key in base.config and config.get(key) != base.config[key]:
                raise UploadRejected(
                    f"config.json: {key}={config.get(key)!r} does not match base "
                    f"{base.name!r} ({base.config[key]!r})"
                )

    @staticmethod
    def _merged(headers: dict[PurePosixPath, dict[str, TensorInfo]]) -> dict[str, TensorInfo]:
        merged: dict[str, TensorInfo] = {}
        for path, tensors in headers.items():
            for name, tensor in tensors.items():
                if name in merged:
                    raise UploadRejected(f"{path}: tensor {name!r} appears in more than one weights file")
                merged[name] = tensor
        return merged

    @staticmethod
    def _tensors(tensors: dict[str, TensorInfo], base: BaseModel) -> None:
        missing, unexpected = set(base.tensors) - set(tensors), set(tensors) - set(base.tensors)
        if missing or unexpected:
            raise UploadRejected(
                f"weights do not match base {base.name!r}: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}"
            )
        for name, tensor in tensors.items():
            if tensor.shape != base.tensors[name].shape:
                raise UploadRejected(
                    f"tensor {name!r} has shape {list(tensor.shape)}, base {base.name!r} has "
                    f"{list(base.tensors[name].shape)}"
                )
            if tensor.dtype not in FLOAT_DTYPES:
                raise UploadRejected(f"tensor {name!r} has non-float dtype {tensor.dtype}")


CHECKS: dict[str, UploadCheck] = {"lora": LoraCheck(), "full": FullWeightsCheck()}


def check_upload(kind: str, files: Files, base: BaseModel, limits: UploadLimits) -> CheckedUpload:
    """Run the check registered for ``kind``."""
    check = CHECKS.get(kind)
    if check is None:
        raise UploadRejected(f"kind must be one of {', '.join(sorted(CHECKS))}, got {kind!r}", param="kind")
    return check.check(files, base, limits)
