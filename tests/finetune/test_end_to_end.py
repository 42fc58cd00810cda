"""A fine-tune through the real gateway: uploaded with the CLI's uploader, listed, called with the official
``openai`` client (stream and not), billed at its own price, private to its tenant, deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from meterway import Client
from models.pool.metrics import model_label
from tests.api.ledger import ledger_rows
from tests.finetune.conftest import BASE

if TYPE_CHECKING:
    from pathlib import Path

    from tests.server import ServerProcess

MESSAGES = [{"role": "user", "content": "The support bot answers:"}]
TOKENS = 12


def tenant_client(server: ServerProcess, tenant: str) -> tuple[str, httpx.Client, openai.AsyncOpenAI]:
    key = str(server.create_key(tenant)["secret"])
    return (
        key,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120),
        openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0),
    )


async def complete(client: openai.AsyncOpenAI, model: str) -> Any:
    return await client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=TOKENS,  # type: ignore[arg-type]
        temperature=0,
        seed=7,
    )


async def complete_streamed(client: openai.AsyncOpenAI, model: str) -> tuple[str, Any]:
    stream = await client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=TOKENS,  # type: ignore[arg-type]
        temperature=0,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    return text, usage


def peft_chat(base_dir: Path, adapter_dir: Path) -> str:
    """What peft produces offline for the same chat request (greedy)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    ids = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
    )
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


@pytest.mark.battery(10)
@pytest.mark.slow
async def test_fine_tune_end_to_end(
    server: ServerProcess, adapter_dir: Path, store_dir: Path, tmp_path: Path
) -> None:
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    _, acme_http, acme_ai = tenant_client(server, acme)
    _, globex_http, globex_ai = tenant_client(server, globex)
    with Client(server.url, acme_http.headers["Authorization"].removeprefix("Bearer ")) as acme_sdk:
        created = await asyncio.to_thread(
            acme_sdk.fine_tunes.upload, adapter_dir, base=BASE, name="support-bot", input_price="0.20",
            output_price="0.40", chunk_bytes=512 * 1024, cache=tmp_path / "cache")
    model = created["id"]
    assert model == f"ft:{BASE}:{acme}:support-bot"
    try:
        assert model in [m.id async for m in acme_ai.models.list()]
        assert model not in [m.id async for m in globex_ai.models.list()]

        tuned, base = await complete(acme_ai, model), await complete(acme_ai, BASE)
        streamed, usage = await complete_streamed(acme_ai, model)
        answer = tuned.choices[0].message.content
        assert answer == streamed and answer != base.choices[0].message.content
        assert usage.completion_tokens == tuned.usage.completion_tokens
        stored = next((store_dir / "finetunes" / acme).glob("support-bot-*"))
        assert answer == await asyncio.to_thread(peft_chat, store_dir / BASE, stored)

        rows = (await ledger_rows(server, [tuned.id]))["by_id"]
        entry = rows[tuned.id]
        assert (entry["model"], entry["tenant"]) == (model, acme)
        assert Decimal(str(entry["input_per_million"])) == Decimal("0.20")
        assert Decimal(str(entry["output_per_million"])) == Decimal("0.40")

        for call in (complete(globex_ai, model), complete(globex_ai, f"ft:{BASE}:{acme}:nope")):
            with pytest.raises(openai.NotFoundError) as error:
                await call
            assert error.value.code == "model_not_found"
        assert globex_http.delete(f"/v1/fine_tuned_models/{model}").status_code == 404
    finally:
        deleted = acme_http.delete(f"/v1/fine_tuned_models/{model}")
    assert deleted.status_code == 200
    with pytest.raises(openai.NotFoundError):
        await complete(acme_ai, model)
    assert model not in [m.id async for m in acme_ai.models.list()]
    for closing in (acme_http, globex_http):
        closing.close()


@pytest.mark.slow
async def test_full_weight_fine_tune_end_to_end(
    server: ServerProcess, store_dir: Path, tmp_path: Path
) -> None:
    """Full weights (here: the base's own, so the answer must equal the base's) load as an ordinary model."""
    import os
    import shutil

    weights = tmp_path / "full"
    weights.mkdir()
    for name in ("config.json", "model.safetensors"):
        try:
            os.link(store_dir / BASE / name, weights / name)
        except OSError:
            shutil.copyfile(store_dir / BASE / name, weights / name)
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    _, http, ai = tenant_client(server, tenant)
    with Client(server.url, http.headers["Authorization"].removeprefix("Bearer ")) as sdk:
        created = await asyncio.to_thread(sdk.fine_tunes.upload, weights, base=BASE, name="full-bot",
                                          output_price="0.5", cache=tmp_path / "cache")
    model = created["id"]
    try:
        assert created["kind"] == "full"
        tuned, base = await complete(ai, model), await complete(ai, BASE)
        assert tuned.choices[0].message.content == base.choices[0].message.content
        entry = (await ledger_rows(server, [tuned.id]))["by_id"][tuned.id]
        assert (entry["model"], Decimal(str(entry["output_per_million"]))) == (model, Decimal("0.5"))
        metrics = http.get("/metrics").text  # open by default: it must not name the tenant
        assert tenant not in metrics and f'model_name="{model_label(model)}"' in metrics
    finally:
        assert http.delete(f"/v1/fine_tuned_models/{model}").status_code == 200
        http.close()


@pytest.mark.slow
def test_meterway_models_cli_against_the_server(
    server: ServerProcess, adapter_dir: Path, tmp_path: Path
) -> None:
    """``meterway models upload|list|delete`` as a user runs them, with METERWAY_URL and METERWAY_API_KEY."""
    import json
    import os
    import subprocess
    import sys

    tenant = f"cli-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "METERWAY_URL": server.url,
        "METERWAY_API_KEY": str(server.create_key(tenant)["secret"]),
        "METERWAY_UPLOAD_CACHE": str(tmp_path / "cache"),
    }
    for variable in ("METERWAY_ADMIN_KEY", "METERWAY_HOME"):
        env.pop(variable, None)

    def meterway(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    model = f"ft:{BASE}:{tenant}:cli-bot"
    upload = meterway("models", "upload", str(adapter_dir), "--base", BASE, "--name", "cli-bot")
    assert upload.returncode == 0, upload.stderr
    assert json.loads(upload.stdout)["id"] == model
    assert "upload cli-bot" in upload.stderr  # the progress bar
    assert [m["id"] for m in json.loads(meterway("models", "list").stdout)["data"]] == [model]
    again = meterway("models", "upload", str(adapter_dir), "--base", BASE, "--name", "cli-bot")
    assert again.returncode != 0 and "409" in again.stderr
    assert json.loads(meterway("models", "delete", model).stdout)["deleted"] is True
    missing = meterway("models", "get", model)
    assert missing.returncode != 0 and "404" in missing.stderr
