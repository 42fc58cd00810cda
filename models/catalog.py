"""The model catalog: what can be called, by whom, and where its weights live.

The demo catalog ships as ``catalog.toml`` beside this module; fine-tuned models (owned by one tenant) are
added by ``models.finetune``. A ``ModelSpec`` is what the pool needs to load and serve one model.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

# Bumped when the engine changes what a seed produces (sampling, kernels): part of every model's fingerprint.
ENGINE_REVISION = "engine-2"


@dataclass(frozen=True)
class ModelSpec:
    """One callable model."""

    id: str
    task: str  # "chat" (chat + legacy completions) or "embedding"
    source: str  # where the import step takes the weights from: gguf:, dir:, alias:, builtin:, store:
    dtype: str
    context_length: int
    owned_by: str
    input_price_per_million: Decimal
    output_price_per_million: Decimal
    tenant: str | None = None  # set for fine-tunes: only this tenant may see or call it
    base: str | None = None  # for LoRA fine-tunes: the catalog model the adapter applies to
    adapter_path: str | None = None  # for LoRA fine-tunes: the adapter's directory in the store
    created: int = 0
    hidden: bool = False
    # Sampling used when a request leaves it unset (the model card's recommendation; OpenAI's 1.0 otherwise).
    default_temperature: float = 1.0
    default_top_p: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """OpenAI's ``system_fingerprint``: changes when the weights (source, revision, adapter), precision or
        engine options do, so that a caller relying on ``seed`` can tell when outputs may differ."""
        parts = [self.id, self.source, self.dtype, self.base or "", self.adapter_path or "", str(self.created),
                 *(f"{k}={v}" for k, v in sorted(self.extra.items())), ENGINE_REVISION]
        return "fp_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]

    @property
    def builtin(self) -> bool:
        return self.source.startswith("builtin:")

    @property
    def store_name(self) -> str:
        """The model store directory holding this model's weights (aliases share their target's)."""
        if self.source.startswith("alias:"):
            return self.source.removeprefix("alias:")
        if self.source.startswith("store:"):
            return self.source.removeprefix("store:")
        return self.id

    def visible_to(self, tenant: str | None, *, admin: bool = False) -> bool:
        """Catalog models are public; a fine-tune is visible to its own tenant (and the admin)."""
        return self.tenant is None or admin or self.tenant == tenant


def load_catalog(path: Path | None = None, *, include_test_model: bool = False) -> list[ModelSpec]:
    """Read the catalog file (the packaged demo catalog by default)."""
    raw = (path or Path(__file__).with_name("catalog.toml")).read_bytes()
    specs = [_spec(entry) for entry in tomllib.loads(raw.decode())["model"]]
    return [s for s in specs if include_test_model or not s.builtin]


def _spec(entry: dict[str, object]) -> ModelSpec:
    return ModelSpec(
        id=str(entry["id"]),
        task=str(entry["task"]),
        source=str(entry["source"]),
        dtype=str(entry["dtype"]),
        context_length=int(entry["context_length"]),  # type: ignore[call-overload]
        owned_by=str(entry["owned_by"]),
        input_price_per_million=Decimal(str(entry["input_price_per_million"])),
        output_price_per_million=Decimal(str(entry["output_price_per_million"])),
        default_temperature=float(entry.get("default_temperature", 1.0)),  # type: ignore[arg-type]
        default_top_p=float(entry.get("default_top_p", 1.0)),  # type: ignore[arg-type]
        extra={str(k): str(v) for k, v in dict(entry.get("extra", {})).items()},  # type: ignore[call-overload]
    )
