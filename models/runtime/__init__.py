"""The in-worker model runtime: transformers + accelerate (+ peft) behind the contract in ``api``.

``load`` is resolved lazily so that importing ``models.runtime.api`` (the gateway and the pool do) never
imports torch. Public API::

    load(spec: LoadSpec) -> TextGenerator | Embedder
    # task "chat": a BatchingGenerator; task "embedding": a MeanPoolingEmbedder
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.runtime.loader import load, prewarm

__all__ = ["load", "prewarm"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from models.runtime import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
