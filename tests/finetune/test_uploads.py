"""Uploading real fine-tunes: accepted, stored content-addressed once, private to the tenant, deletable."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tarfile
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.finetune.conftest import BASE, UploadServer, dir_files, lora_fields, multipart

if TYPE_CHECKING:
    from pathlib import Path

FT_ID = f"ft:{BASE}:acme:support-bot"


def tar_of(directory: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in sorted(directory.iterdir()):
            archive.add(file, arcname=f"{top}/{file.name}")
    return buffer.getvalue()


def blobs(server: UploadServer) -> list[Path]:
    root = server.store / "blobs" / "sha256"
    return sorted(root.iterdir()) if root.exists() else []


def test_real_adapter_is_accepted_stored_and_priced(upload_server: UploadServer, adapter_dir: Path) -> None:
    fields = lora_fields(input_price_per_million="0.20", output_price_per_million="0.40")
    with upload_server.client() as client:
        response = client.post("/v1/fine_tuned_models", **multipart(fields, dir_files(adapter_dir)))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["id"] == FT_ID
        assert (created["kind"], created["owned_by"], created["base"]) == ("lora", "acme", BASE)
        assert (created["input_price_per_million"], created["output_price_per_million"]) == ("0.20", "0.40")
        assert [m["id"] for m in client.get("/v1/fine_tuned_models").json()["data"]] == [FT_ID]
        assert client.get(f"/v1/fine_tuned_models/{FT_ID}").json()["sha256"] == created["sha256"]
    stored = next((upload_server.store / "finetunes" / "acme").iterdir())
    weights = stored / "adapter_model.safetensors"
    assert weights.read_bytes() == (adapter_dir / "adapter_model.safetensors").read_bytes()
    assert weights.stat().st_ino in {blob.stat().st_ino for blob in blobs(upload_server)}
    assert not any((upload_server.store / ".staging").iterdir())
    price = asyncio.run(_quote(upload_server, FT_ID))
    assert (price.input_per_million, price.output_per_million) == (Decimal("0.20"), Decimal("0.40"))


async def _quote(server: UploadServer, model: str) -> object:
    from billing.prices import PriceBook
    from meterway.db import Database

    database = Database.connect(server.database_url)
    try:
        return await PriceBook(database.sessions, "usd").quote(model)
    finally:
        await database.close()


def test_same_bytes_are_stored_once(upload_server: UploadServer, adapter_dir: Path) -> None:
    with upload_server.client() as client:
        first = client.post(
            "/v1/fine_tuned_models", **multipart(lora_fields("bot-a"), dir_files(adapter_dir))
        )
        stored_once = blobs(upload_server)
        # The same adapter again, this time as a tar with a top-level folder, under another name.
        second = client.post(
            "/v1/fine_tuned_models",
            **multipart(lora_fields("bot-b"), [("adapter.tar", tar_of(adapter_dir, "support-bot"))]),
        )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert blobs(upload_server) == stored_once
    assert first.json()["sha256"] == second.json()["sha256"]
    a, b = (next((upload_server.store / "finetunes" / "acme").glob(f"{n}-*")) for n in ("bot-a", "bot-b"))
    assert (a / "adapter_model.safetensors").stat().st_ino == (b / "adapter_model.safetensors").stat().st_ino


def test_same_name_twice_is_a_conflict(upload_server: UploadServer, adapter_dir: Path) -> None:
    with upload_server.client() as client:
        assert (
            client.post(
                "/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(adapter_dir))
            ).status_code
            == 201
        )
        again = client.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(adapter_dir)))
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]["message"]


def test_other_tenant_sees_a_missing_model(upload_server: UploadServer, adapter_dir: Path) -> None:
    with upload_server.client("acme") as acme, upload_server.client("globex") as globex:
        assert (
            acme.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(adapter_dir))).status_code
            == 201
        )
        assert globex.get("/v1/fine_tuned_models").json()["data"] == []
        for response in (
            globex.get(f"/v1/fine_tuned_models/{FT_ID}"),
            globex.delete(f"/v1/fine_tuned_models/{FT_ID}"),
            globex.get(f"/v1/fine_tuned_models/ft:{BASE}:acme:does-not-exist"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "model_not_found"
        missing = globex.get(f"/v1/fine_tuned_models/ft:{BASE}:acme:does-not-exist").json()
        hidden = globex.get(f"/v1/fine_tuned_models/{FT_ID}").json()
        assert hidden["error"]["message"].replace(FT_ID, "X") == missing["error"]["message"].replace(
            f"ft:{BASE}:acme:does-not-exist", "X"
        )
        assert acme.get(f"/v1/fine_tuned_models/{FT_ID}").status_code == 200


def test_delete_removes_files_but_keeps_shared_blobs(upload_server: UploadServer, adapter_dir: Path) -> None:
    with upload_server.client() as client:
        for name in ("bot-a", "bot-b"):
            assert (
                client.post(
                    "/v1/fine_tuned_models", **multipart(lora_fields(name), dir_files(adapter_dir))
                ).status_code
                == 201
            )
        shared = blobs(upload_server)
        deleted = client.delete(f"/v1/fine_tuned_models/ft:{BASE}:acme:bot-a")
        assert deleted.json() == {"id": f"ft:{BASE}:acme:bot-a", "object": "model", "deleted": True}
        assert client.get(f"/v1/fine_tuned_models/ft:{BASE}:acme:bot-a").status_code == 404
        assert blobs(upload_server) == shared  # bot-b still links them
        assert client.delete(f"/v1/fine_tuned_models/ft:{BASE}:acme:bot-b").status_code == 200
        assert [m["id"] for m in client.get("/v1/fine_tuned_models").json()["data"]] == []
        # A deleted name can be uploaded again.
        assert (
            client.post(
                "/v1/fine_tuned_models", **multipart(lora_fields("bot-a"), dir_files(adapter_dir))
            ).status_code
            == 201
        )
        assert client.delete(f"/v1/fine_tuned_models/ft:{BASE}:acme:bot-a").status_code == 200
    assert upload_server.leftovers() == []


def _modified_adapter(adapter_dir: Path, target: Path, **config: object) -> Path:
    shutil.copytree(adapter_dir, target)
    original = json.loads((target / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps({**original, **config}))
    return target


def test_adapter_whose_rank_does_not_match_its_tensors_is_refused(
    upload_server: UploadServer, adapter_dir: Path, tmp_path: Path
) -> None:
    bad = _modified_adapter(adapter_dir, tmp_path / "bad", r=16)
    with upload_server.client() as client:
        response = client.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(bad)))
    assert response.status_code == 400
    assert "do not fit base" in response.json()["error"]["message"]
    assert upload_server.leftovers() == []


def _fake_adapter(target: Path, shapes: dict[str, tuple[int, int]], modules: list[str]) -> Path:
    import torch
    from safetensors.torch import save_file

    target.mkdir()
    save_file(
        {name: torch.zeros(shape) for name, shape in shapes.items()}, target / "adapter_model.safetensors"
    )
    (target / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": modules})
    )
    return target


@pytest.mark.parametrize(
    ("shapes", "modules", "message"),
    [
        # Made for a model with hidden size 768 (another architecture).
        (
            {
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (8, 768),
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": (768, 8),
            },
            ["q_proj"],
            "do not fit base",
        ),
        (
            {
                "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight": (8, 576),
                "base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight": (1728, 8),
            },
            ["qkv_proj"],
            "does not exist in base",
        ),
        (
            {
                "base_model.model.model.layers.99.self_attn.q_proj.lora_A.weight": (8, 576),
                "base_model.model.model.layers.99.self_attn.q_proj.lora_B.weight": (576, 8),
            },
            ["q_proj"],
            "does not exist in base",
        ),
        (
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (8, 576)},
            ["q_proj"],
            "lacks lora_B",
        ),
        (
            {
                "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": (8, 576),
                "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight": (1536, 8),
            },
            ["q_proj"],
            "not in target_modules",
        ),
        ({"model.embed_tokens.weight": (10, 576)}, ["q_proj"], "unexpected tensor"),
    ],
)
def test_adapter_that_does_not_fit_the_base_is_refused(
    upload_server: UploadServer,
    tmp_path: Path,
    shapes: dict[str, tuple[int, int]],
    modules: list[str],
    message: str,
) -> None:
    bad = _fake_adapter(tmp_path / "bad", shapes, modules)
    with upload_server.client() as client:
        response = client.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(bad)))
    assert response.status_code == 400
    assert message in response.json()["error"]["message"], response.json()
    assert upload_server.leftovers() == []


def test_unknown_base_and_bad_fields_are_refused(upload_server: UploadServer, adapter_dir: Path) -> None:
    with upload_server.client() as client:
        for fields, message in (
            ({**lora_fields(), "base": "gpt-9"}, "not a catalog chat model"),
            ({**lora_fields(), "base": "all-minilm-l6-v2"}, "not a catalog chat model"),
            ({**lora_fields(), "name": "../x"}, "name must be"),
            ({**lora_fields(), "kind": "qlora"}, "kind must be"),
            ({**lora_fields(), "input_price_per_million": "1e999x"}, "decimal"),
        ):
            response = client.post("/v1/fine_tuned_models", **multipart(fields, dir_files(adapter_dir)))
            assert response.status_code == 400, fields
            assert message in response.json()["error"]["message"]
    assert upload_server.leftovers() == []


def test_zip_archive_is_accepted(upload_server: UploadServer, adapter_dir: Path) -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(adapter_dir.iterdir()):
            archive.write(file, arcname=f"my-adapter/{file.name}")
    with upload_server.client() as client:
        response = client.post(
            "/v1/fine_tuned_models", **multipart(lora_fields(), [("a.zip", buffer.getvalue())])
        )
    assert response.status_code == 201, response.text
    stored = next((upload_server.store / "finetunes" / "acme").glob("support-bot-*"))
    assert (stored / "adapter_config.json").exists()


def test_admin_uploads_for_a_named_tenant(upload_server: UploadServer, adapter_dir: Path) -> None:
    with httpx.Client(base_url=upload_server.url, timeout=120) as admin, upload_server.client("acme") as acme:
        refused = admin.post("/v1/fine_tuned_models", **multipart(lora_fields(), dir_files(adapter_dir)))
        assert refused.status_code == 400
        assert "must name the tenant" in refused.json()["error"]["message"]
        created = admin.post(
            "/v1/fine_tuned_models", **multipart(lora_fields(tenant="acme"), dir_files(adapter_dir))
        )
        assert created.status_code == 201
        assert created.json()["owned_by"] == "acme"
        assert [m["id"] for m in acme.get("/v1/fine_tuned_models").json()["data"]] == [FT_ID]
        assert [m["id"] for m in admin.get("/v1/fine_tuned_models").json()["data"]] == [FT_ID]
