"""Linear layers packed for oneDNN compute what the dense layers computed, and give the dense memory back."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
import torch

from meterway.errors import InvalidRequest
from models.runtime.packed import (
    KernelTimes,
    PackedLinear,
    can_pack,
    pack_linears,
    pack_linears_in_slices,
    time_kernels,
)
from tests.runtime.conftest import SMOLLM, chat, request, run, warmed

if TYPE_CHECKING:
    from pathlib import Path


def _layers() -> torch.nn.ModuleDict:
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"plain": torch.nn.Linear(576, 1536, bias=False),
                                "biased": torch.nn.Linear(1536, 576, bias=True)})


@pytest.mark.parametrize("shape", [(1, 576), (8, 576), (40, 576), (2, 5, 576), (3, 1, 576)])
def test_packed_layers_compute_what_dense_layers_computed(shape: tuple[int, ...]) -> None:
    layers = _layers()
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected = layers["biased"](torch.relu(layers["plain"](x)))
        assert pack_linears(layers) == 2
        packed = layers["biased"](torch.relu(layers["plain"](x)))
    assert all(type(layer) is PackedLinear for layer in layers.values())
    assert packed.shape == expected.shape
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-5)


def test_the_dense_weight_is_released_but_keeps_its_shape() -> None:
    layers = _layers()
    pack_linears(layers)
    weight = layers["plain"].weight
    assert (weight.shape, weight.dtype, weight.device.type) == ((1536, 576), torch.float32, "cpu")
    assert weight.stride() == (0, 0)  # one element behind a shape-preserving view: the storage is gone
    assert weight.untyped_storage().nbytes() == 4


def test_a_weight_tied_to_an_embedding_is_kept() -> None:
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(100, 64), "head": torch.nn.Linear(64, 100, bias=False)})
    model["head"].weight = model["embed"].weight
    before = model["embed"].weight.detach().clone()
    x = torch.randn(4, 64)
    with torch.inference_mode():
        expected = model["head"](x)
        pack_linears(model)
        torch.testing.assert_close(model["head"](x), expected, rtol=1e-5, atol=1e-5)
    assert type(model["head"]) is PackedLinear
    assert torch.equal(model["embed"].weight, before)  # the embedding still looks tokens up in it


def test_only_cpu_float_weights_are_packed() -> None:
    assert can_pack(torch.device("cpu"), torch.float32)
    assert can_pack(torch.device("cpu"), torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert not can_pack(torch.device("cpu"), torch.float16)
    assert not can_pack(torch.device("cuda"), torch.float32)
    half = torch.nn.Linear(16, 16).to(torch.float16)
    assert pack_linears(half) == 0
    assert type(half) is torch.nn.Linear


def test_bfloat16_layers_are_packed_where_the_cpu_has_a_bf16_kernel() -> None:
    layers = _layers().to(torch.bfloat16)
    x = torch.randn(8, 576, dtype=torch.bfloat16)
    supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with torch.inference_mode():
        expected = layers["plain"](x).float()
        assert pack_linears(layers) == (2 if supported else 0)
        packed = layers["plain"](x).float()
    assert (type(layers["plain"]) is PackedLinear) == supported  # an AVX2-only CPU keeps the dense bf16 layer
    torch.testing.assert_close(packed, expected, rtol=2e-2, atol=2e-2)


def test_both_kernels_are_timed_on_the_models_own_weights() -> None:
    times = time_kernels(_layers(), repeats=2)
    assert times is not None and times.dense_ms > 0 and times.packed_ms > 0
    assert time_kernels(torch.nn.Linear(16, 16).to(torch.float16)) is None  # nothing packable


def test_packing_is_chosen_only_for_a_clear_gain() -> None:
    assert KernelTimes(dense_ms=20.0, packed_ms=10.0).packing_pays
    assert not KernelTimes(dense_ms=10.0, packed_ms=9.8).packing_pays  # within 5%: stay dense
    assert not KernelTimes(dense_ms=10.0, packed_ms=14.0).packing_pays


def _load(smollm_dir: Path, packed_weights: str) -> Any:
    from models.runtime import load
    from models.runtime.api import LoadSpec

    return load(LoadSpec(SMOLLM, str(smollm_dir), "chat", max_batch=2, extra={"packed_weights": packed_weights}))


def _packed_layers(generator: Any) -> int:
    return sum(type(m) is PackedLinear for m in generator._model.modules())


def test_every_packing_mode_serves_the_same_greedy_text(smollm_dir: Path, tokenizer: Any) -> None:
    ids = chat(tokenizer, "Name three colours.")
    texts, packed = {}, {}
    for mode in ("true", "false", "auto"):
        generator = _load(smollm_dir, mode)
        try:
            texts[mode] = run(generator, request(mode, ids, max_tokens=12)).text  # served while packing
            packed[mode] = _packed_layers(warmed(generator))
        finally:
            generator.close()
    assert texts["true"] == texts["false"] == texts["auto"] != ""
    assert packed["true"] == 211 and packed["false"] == 0  # 30 layers x 7 projections + the LM head
    assert packed["auto"] in (0, 211)  # whichever kernel was faster on this CPU


def test_an_unknown_packing_mode_is_refused(smollm_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="packed_weights"):
        _load(smollm_dir, "sometimes")


def test_packing_in_slices_can_stop_midway_and_leaves_the_callers_grad_mode_alone() -> None:
    layers = _layers()
    slices = pack_linears_in_slices(layers, per_slice=1)

    def first_slice() -> None:  # as the decode thread runs it: under inference mode, on its own thread
        with torch.inference_mode():
            next(slices)

    worker = threading.Thread(target=first_slice)
    worker.start()
    worker.join()
    assert type(layers["plain"]) is PackedLinear and type(layers["biased"]) is torch.nn.Linear
    slices.close()  # an engine closed before packing finished drops its slices on another thread
    assert torch.is_grad_enabled()
