"""Sentence embeddings with a transformers encoder: mean pooling over real tokens, then L2 normalisation.

This is what sentence-transformers does for all-MiniLM-L6-v2 (its ``modules.json``: Transformer, mean Pooling,
Normalize), without depending on that package.
"""

from __future__ import annotations

import threading

import torch

from meterway.errors import ContextTooLong
from models.runtime.api import EmbeddingResult

# Inputs per forward pass: bounds padding waste and peak memory for large requests.
_CHUNK = 32


class MeanPoolingEmbedder:
    """An ``Embedder``: batches token-id inputs with padding and returns unit vectors."""

    def __init__(self, model: torch.nn.Module, *, pad_id: int, max_tokens: int, threads: int = 0) -> None:
        self._model = model
        self._pad_id = pad_id
        self._max_tokens = max_tokens
        self._threads = threads
        self._device = next(model.parameters()).device
        self._lock = threading.Lock()  # one forward at a time: callers may share the worker's threads

    def embed(self, inputs: list[list[int]]) -> EmbeddingResult:
        """Embed each input (already tokenized, special tokens included); count every real token."""
        for index, ids in enumerate(inputs):
            if len(ids) > self._max_tokens:
                raise ContextTooLong(f"input {index} has {len(ids)} tokens; the model reads at most "
                                     f"{self._max_tokens}", param="input")
        vectors: list[list[float]] = [[] for _ in inputs]
        # Similar lengths share a forward pass, so little is spent on padding.
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        with self._lock, torch.inference_mode():
            if self._threads:
                torch.set_num_threads(self._threads)
            for start in range(0, len(order), _CHUNK):
                chunk = order[start:start + _CHUNK]
                pooled = self._forward([inputs[i] for i in chunk])
                for i, vector in zip(chunk, pooled.tolist(), strict=True):
                    vectors[i] = vector
        return EmbeddingResult(vectors=vectors, prompt_tokens=sum(len(ids) for ids in inputs))

    def _forward(self, inputs: list[list[int]]) -> torch.Tensor:
        width = max(1, max(len(ids) for ids in inputs))
        ids = torch.full((len(inputs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, tokens in enumerate(inputs):
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, :len(tokens)] = 1
        ids, mask = ids.to(self._device), mask.to(self._device)
        hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)

    def close(self) -> None:
        """Release the model."""
        self._model = None  # type: ignore[assignment]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors where ``mask`` is 1, then scale each to unit length."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize((summed / counts).float(), p=2, dim=1)
