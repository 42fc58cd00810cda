"""Full-weight fine-tunes: weights that match the base are stored and load; mismatching ones are refused."""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

import pytest

from tests.finetune.conftest import BASE, UploadServer, multipart

if TYPE_CHECKING:
    from pathlib import Path

FULL_FIELDS = {"base": BASE, "name": "full-bot", "kind": "full"}


def base_header(store_dir: Path) -> tuple[dict[str, Any], int]:
    with (store_dir / BASE / "model.safetensors").open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length)), (
            store_dir / BASE / "model.safetensors"
        ).stat().st_size - 8 - length


def sparse_weights(path: Path, header: dict[str, Any], data_bytes: int) -> Path:
    """A safetensors file with ``header`` and zero data, written sparse (no disk used for the zeros)."""
    body = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(body)) + body)
        handle.truncate(8 + len(body) + data_bytes)
    return path


def post_files(
    server: UploadServer, files: list[tuple[str, Path]], fields: dict[str, str] = FULL_FIELDS
) -> Any:
    handles = [(name, path.open("rb")) for name, path in files]
    try:
        with server.client() as client:
            return client.post(
                "/v1/fine_tuned_models",
                data=fields,
                files=[("file", (name, handle, "application/octet-stream")) for name, handle in handles],
            )
    finally:
        for _, handle in handles:
            handle.close()


def test_config_that_does_not_match_the_base_is_refused(
    upload_server: UploadServer, store_dir: Path, tmp_path: Path
) -> None:
    config = json.loads((store_dir / BASE / "config.json").read_text())
    for (
        key,
        value,
    ) in (
        ("hidden_size", 768),
        ("num_hidden_layers", 12),
        ("model_type", "gpt2"),
        ("architectures", ["BertModel"]),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with upload_server.client() as client:
            response = client.post(
                "/v1/fine_tuned_models",
                **multipart(
                    FULL_FIELDS,
                    [
                        ("config.json", (tmp_path / "config.json").read_bytes()),
                        ("model.safetensors", struct.pack("<Q", 2) + b"{}"),
                    ],
                ),
            )
        assert response.status_code == 400
        assert f"config.json: {key}=" in response.json()["error"]["message"]
    assert upload_server.leftovers() == []


def test_weights_that_do_not_match_the_base_are_refused(
    make_server: Any, store_dir: Path, tmp_path: Path
) -> None:
    upload_server = make_server(max_upload_bytes=1024 * 1024 * 1024)
    header, data_bytes = base_header(store_dir)
    config = store_dir / BASE / "config.json"
    transposed = dict(header)
    entry = dict(header["model.layers.0.mlp.up_proj.weight"])
    transposed["model.layers.0.mlp.up_proj.weight"] = {**entry, "shape": entry["shape"][::-1]}
    cases = {
        "has shape [576, 1536], base": sparse_weights(tmp_path / "t.safetensors", transposed, data_bytes),
        "missing ['model.embed_tokens.weight'": sparse_weights(
            tmp_path / "m.safetensors",
            {"model.norm.weight": {"dtype": "F32", "shape": [576], "data_offsets": [0, 2304]}},
            2304,
        ),
        "unexpected ['lm_head.weight']": sparse_weights(
            tmp_path / "u.safetensors",
            {"lm_head.weight": {"dtype": "F32", "shape": [4, 576], "data_offsets": [0, 4 * 576 * 4]}},
            4 * 576 * 4,
        ),
    }
    for message, weights in cases.items():
        response = post_files(upload_server, [("config.json", config), ("model.safetensors", weights)])
        assert response.status_code == 400
        assert message in response.json()["error"]["message"], response.json()
    assert upload_server.leftovers() == []


@pytest.mark.slow
async def test_full_weights_are_stored_inherit_the_tokenizer_and_load(
    make_server: Any, store_dir: Path
) -> None:
    server = make_server(max_upload_bytes=1024 * 1024 * 1024)
    base = store_dir / BASE
    import asyncio

    response = await asyncio.to_thread(
        post_files,
        server,
        [("config.json", base / "config.json"), ("model.safetensors", base / "model.safetensors")],
    )
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "full"

    from meterway.db import Database
    from models.finetune.catalog import resolve, tenant_models
    from service.auth import Principal

    database = Database.connect(server.database_url)
    try:
        async with database.sessions() as session:
            spec = await resolve(session, f"ft:{BASE}:acme:full-bot", Principal("acme", "k"))
            listed = await tenant_models(session, "acme")
    finally:
        await database.close()
    assert spec is not None and listed == [spec]
    assert spec.source.startswith("store:finetunes/acme/full-bot-") and spec.base is None
    directory = server.store / spec.store_name
    assert {"tokenizer.json", "chat_template.jinja", "config.json", "model.safetensors"} <= {
        p.name for p in directory.iterdir()
    }
    await asyncio.to_thread(_loads_like_the_base, directory, base)


def _loads_like_the_base(directory: Path, base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ids = tokenizer("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
