"""The in-worker model runtime: transformers + accelerate (+ peft) behind the contract in ``api``.

``load`` is resolved lazily so that importing ``models.runtime.api`` (the gateway and the pool do) never
imports torch. Public API::

    load(spec: LoadSpec) -> TextGenerator | Embedder
    # task "chat": a BatchingGenerator; task "embedding": a MeanPoolingEmbedder
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.runtime.loader import load

__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from models.runtime.loader import load

        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
