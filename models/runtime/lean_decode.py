"""One decode step of a Llama-architecture model, without transformers' per-call machinery.

A decode step feeds one token per row. transformers' ``LlamaForCausalLM.forward`` spends a good part of such
a step outside the arithmetic: output dataclasses, keyword plumbing, mask preparation, the attention
interface lookup and ``nn.Module.__call__`` around ~300 submodules. On 2 CPU cores that was 5-6 ms of a
50-90 ms step (docs/performance.md). ``LeanDecoder`` runs the same modules' arithmetic in the same order,
calling their ``forward`` directly: the embedding, the rotary table, each layer's norms, projections,
rotary embedding, cache update (``DynamicLayer.update``, so the batch's cache surgery is unchanged), SDPA
exactly as transformers calls it for one query token with a mask (grouped heads folded into the query
axis), the MLP, the final norm and the LM head. Greedy text matches the stock forward
(``tests/runtime/test_lean_decode.py``).

It serves only base-model rows: an adapter row needs peft's LoRA layers, so a batch holding one takes the
stock forward. Where LoRA layers wrap the projections, their ``base_layer`` is called.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import DynamicCache

ARCHITECTURES = ("llama",)


def _plain(module: torch.nn.Module) -> Any:
    """The module's own computation: a LoRA layer's base layer, and ``forward`` without ``__call__``."""
    return getattr(module, "base_layer", module).forward


class LeanDecoder:
    """Decode steps for a causal LM whose architecture this module knows (see ``for_model``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        config: Any = model.config
        self._model: Any = model  # transformers' modules, typed loosely as ``nn.Module`` attributes are
        self._inner: Any = model.model
        self._heads = int(config.num_attention_heads)
        self._kv_heads = int(config.num_key_value_heads)
        self._head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self._heads)

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> LeanDecoder | None:
        """A decoder for ``model``, or ``None`` where its architecture is not one this module mirrors."""
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) not in ARCHITECTURES or getattr(config, "pretraining_tp", 1) != 1:
            return None
        if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", None):
            return None
        return cls(model)

    def __call__(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 cache: DynamicCache, **_: Any) -> SimpleNamespace:
        """Logits ``[rows, 1, vocab]`` for one new token per row (``input_ids`` and ``position_ids``
        ``[rows, 1]``; ``attention_mask`` bool ``[rows, 1, 1, columns]`` over the cache and the new token)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        inner = self._inner
        layers: Any = cache.layers  # DynamicLayer per decoder layer
        rows = input_ids.shape[0]
        hidden = inner.embed_tokens.forward(input_ids)
        cos, sin = inner.rotary_emb.forward(hidden, position_ids)
        for index, layer in enumerate(inner.layers):
            attention = layer.self_attn
            x = layer.input_layernorm.forward(hidden)
            q = _plain(attention.q_proj)(x).view(rows, 1, self._heads, self._head_dim).transpose(1, 2)
            k = _plain(attention.k_proj)(x).view(rows, 1, self._kv_heads, self._head_dim).transpose(1, 2)
            v = _plain(attention.v_proj)(x).view(rows, 1, self._kv_heads, self._head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = layers[index].update(k, v)
            hidden = hidden + _plain(attention.o_proj)(self._attend(q, k, v, attention_mask, attention.scaling))
            x = layer.post_attention_layernorm.forward(hidden)
            mlp = layer.mlp
            hidden = hidden + _plain(mlp.down_proj)(
                mlp.act_fn(_plain(mlp.gate_proj)(x)) * _plain(mlp.up_proj)(x))
        return SimpleNamespace(logits=_plain(self._model.lm_head)(inner.norm.forward(hidden)))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                scale: float) -> torch.Tensor:
        """SDPA for one query token per row, the query heads of a group folded onto their key/value head."""
        rows = q.shape[0]
        folded = q.reshape(rows, self._kv_heads, self._heads // self._kv_heads, self._head_dim)
        out = F.scaled_dot_product_attention(folded, k, v, attn_mask=mask, scale=scale)
        return out.reshape(rows, self._heads, 1, self._head_dim).transpose(1, 2).reshape(rows, 1, -1)
