"""The pure-Python safetensors header check: real files pass, every inconsistent layout is refused."""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING

import pytest

from meterway.errors import UploadRejected
from models.finetune.safetensors_header import read_header

if TYPE_CHECKING:
    from pathlib import Path


def write(path: Path, header: object, data: bytes, *, raw_header: bytes | None = None) -> Path:
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def test_real_file_written_by_safetensors_is_read(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)}, tmp_path / "x.safetensors")
    tensors = read_header(tmp_path / "x.safetensors")
    assert {n: (t.dtype, t.shape) for n, t in tensors.items()} == {"a": ("F32", (2, 3)), "b": ("BF16", (4,))}


def test_base_model_header_is_read(store_dir: Path) -> None:
    tensors = read_header(store_dir / "smollm2-135m-instruct" / "model.safetensors")
    assert tensors["model.layers.0.self_attn.q_proj.weight"].shape == (576, 576)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "past the"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlaps",
        ),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "unused bytes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, "trailing bytes"),
        ({"a": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8, "invalid data_offsets"),
        ([1, 2, 3], b"", "not a JSON object"),
    ],
)
def test_inconsistent_headers_are_refused(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    with pytest.raises(UploadRejected, match=message):
        read_header(write(tmp_path / "bad.safetensors", header, data))


def test_oversized_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{}")
    with pytest.raises(UploadRejected, match="exceeds the 104857600-byte limit"):
        read_header(path)


def test_header_that_is_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadRejected, match="not valid JSON"):
        read_header(write(tmp_path / "bad.safetensors", None, b"", raw_header=b"\x80\x03cposix\nsystem\n"))


def test_header_longer_than_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(UploadRejected, match="runs past the end"):
        read_header(path)
