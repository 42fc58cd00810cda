"""The malicious-upload corpus: each is refused with a clear 4xx and leaves no file behind.

Every case goes through ``POST /v1/fine_tuned_models`` on a real socket; afterwards the store holds nothing
but the base model, and the canary file a traversal tries to write never appears.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import tarfile
import zipfile
from typing import TYPE_CHECKING

import pytest

from tests.finetune.conftest import UploadServer, lora_fields, multipart

if TYPE_CHECKING:
    from pathlib import Path

ADAPTER_CONFIG = json.dumps(
    {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
).encode()


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def member(
    name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    return info, content if kind == tarfile.REGTYPE else None


def zip_bytes(*entries: tuple[str, bytes, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def safetensors(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def canary(server: UploadServer) -> Path:
    return server.store.parent / "canary.txt"


def depth(server: UploadServer) -> str:
    """A relative path from the staging area up to the canary's directory."""
    return "../" * (len(server.store.parts) + 4)


CASES = {
    "pickle .bin": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        ("adapter_model.bin", b"\x80\x04K\x01."),
    ],
    "pickle .pt": lambda s: [("weights.pt", b"\x80\x04K\x01.")],
    "pickle .ckpt in tar": lambda s: [("a.tar", tar_bytes(member("model.ckpt", b"\x80\x04K\x01.")))],
    "pickle .pkl in zip": lambda s: [("a.zip", zip_bytes(("x/model.pkl", b"\x80\x04K\x01.", 0o100644)))],
    "multipart traversal": lambda s: [("../../canary.txt", b"pwned")],
    "tar traversal": lambda s: [("a.tar", tar_bytes(member("../../../canary.txt", b"pwned")))],
    "tar deep traversal": lambda s: [("a.tar", tar_bytes(member(depth(s) + str(canary(s))[1:], b"pwned")))],
    "tar absolute path": lambda s: [("a.tar", tar_bytes(member(str(canary(s)), b"pwned")))],
    "zip traversal": lambda s: [("a.zip", zip_bytes(("../../canary.txt", b"pwned", 0o100644)))],
    "zip absolute path": lambda s: [("a.zip", zip_bytes((str(canary(s)), b"pwned", 0o100644)))],
    "tar symlink": lambda s: [
        ("a.tar", tar_bytes(member("adapter_config.json", kind=tarfile.SYMTYPE, link=str(canary(s)))))
    ],
    "tar hard link": lambda s: [
        ("a.tar", tar_bytes(member("x.json", b"{}"), member("y.json", kind=tarfile.LNKTYPE, link="x.json")))
    ],
    "tar device": lambda s: [("a.tar", tar_bytes(member("dev.json", kind=tarfile.CHRTYPE)))],
    "tar fifo": lambda s: [("a.tar", tar_bytes(member("fifo.json", kind=tarfile.FIFOTYPE)))],
    "zip symlink": lambda s: [
        ("a.zip", zip_bytes(("adapter_config.json", str(canary(s)).encode(), stat.S_IFLNK | 0o777)))
    ],
    "nested archive": lambda s: [("a.tar", tar_bytes(member("inner.zip", b"PK")))],
    "hidden file": lambda s: [("a.tar", tar_bytes(member(".bashrc", b"x")))],
    "oversized safetensors header": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        ("adapter_model.safetensors", struct.pack("<Q", 10**12) + b"{}"),
    ],
    "safetensors header not JSON": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        ("adapter_model.safetensors", safetensors(None, raw=b"\x80\x04.")),
    ],
    "safetensors offsets past end": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        (
            "adapter_model.safetensors",
            safetensors({"t": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}}, b"\0" * 16),
        ),
    ],
    "safetensors overlapping tensors": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        (
            "adapter_model.safetensors",
            safetensors(
                {
                    "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                    "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                },
                b"\0" * 16,
            ),
        ),
    ],
    "safetensors unknown dtype": lambda s: [
        ("adapter_config.json", ADAPTER_CONFIG),
        (
            "adapter_model.safetensors",
            safetensors({"a": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
        ),
    ],
    "config not JSON": lambda s: [
        ("adapter_config.json", b"\x80\x04K\x01."),
        ("adapter_model.safetensors", safetensors({})),
    ],
    "not an archive": lambda s: [("a.zip", b"this is not a zip")],
    "too many entries": lambda s: [("a.tar", tar_bytes(*(member(f"f{i}.json", b"{}") for i in range(300))))],
}
MESSAGES = {
    "pickle .bin": "pickle",
    "pickle .pt": "pickle",
    "pickle .ckpt in tar": "pickle",
    "pickle .pkl in zip": "pickle",
    "multipart traversal": "path traversal",
    "tar traversal": "path traversal",
    "tar deep traversal": "path traversal",
    "tar absolute path": "absolute path",
    "zip traversal": "path traversal",
    "zip absolute path": "absolute path",
    "tar symlink": "links are not allowed",
    "tar hard link": "links are not allowed",
    "tar device": "only regular files",
    "tar fifo": "only regular files",
    "zip symlink": "links are not allowed",
    "nested archive": "not accepted",
    "hidden file": "no hidden files",
    "oversized safetensors header": "exceeds the",
    "safetensors header not JSON": "not valid JSON",
    "safetensors offsets past end": "past the",
    "safetensors overlapping tensors": "overlaps",
    "safetensors unknown dtype": "unknown dtype",
    "config not JSON": "not valid JSON",
    "not an archive": "not a tar or zip archive",
    "too many entries": "more than 256 entries",
}


@pytest.mark.battery(12)
@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_upload_is_refused_and_leaves_nothing(upload_server: UploadServer, case: str) -> None:
    with upload_server.client() as client:
        response = client.post(
            "/v1/fine_tuned_models", **multipart(lora_fields(), CASES[case](upload_server))
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_upload" or error["type"] == "invalid_request_error"
        assert MESSAGES[case] in error["message"], error["message"]
        assert client.get("/v1/fine_tuned_models").json()["data"] == []
    assert upload_server.leftovers() == []
    assert not canary(upload_server).exists()


@pytest.mark.battery(12)
def test_gzip_bomb_is_refused_by_ratio(make_server: object) -> None:
    server = make_server(max_upload_bytes=8 * 1024 * 1024)  # type: ignore[operator]
    bomb = tar_bytes(member("adapter_model.safetensors", b"\0" * (64 * 1024 * 1024)), compress=True)
    assert len(bomb) < 1024 * 1024
    with server.client() as client:
        response = client.post("/v1/fine_tuned_models", **multipart(lora_fields(), [("bomb.tar.gz", bomb)]))
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["message"]
    assert server.leftovers() == []


@pytest.mark.battery(12)
def test_zip_that_lies_about_its_sizes_is_refused(upload_server: UploadServer) -> None:
    honest = zip_bytes(("adapter_config.json", b" " * 100_000, 0o100644))
    # Patch the declared uncompressed size (local header and central directory) down to 10 bytes.
    lying = bytearray(honest)
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = lying.find(signature)
        lying[position + size_offset : position + size_offset + 4] = struct.pack("<I", 10)
    with upload_server.client() as client:
        response = client.post("/v1/fine_tuned_models", **multipart(lora_fields(), [("a.zip", bytes(lying))]))
    assert response.status_code == 400
    assert (
        "expands past its declared size" in response.json()["error"]["message"]
        or "not a readable zip" in response.json()["error"]["message"]
    )
    assert upload_server.leftovers() == []


@pytest.mark.battery(12)
def test_upload_over_the_size_limit_is_413(make_server: object) -> None:
    server = make_server(max_upload_bytes=256 * 1024)  # type: ignore[operator]
    with server.client() as client:
        response = client.post(
            "/v1/fine_tuned_models",
            **multipart(lora_fields(), [("adapter_model.safetensors", b"\0" * (512 * 1024))]),
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        session = client.post("/v1/resumable_uploads", json={"bytes": 512 * 1024})
        assert session.status_code == 413
    assert server.leftovers() == []
