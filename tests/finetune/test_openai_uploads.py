"""OpenAI's Uploads API with the official client: an adapter archive sent as parts out of order, completed
into a file, and the fine-tune created from that file serves; cancel, wrong sizes and other tenants are
refused with OpenAI's error body.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import TYPE_CHECKING

import openai
import pytest

from meterway.sdk import pack_directory as pack
from tests.finetune.conftest import BASE
from tests.finetune.test_end_to_end import complete, tenant_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.server import ServerProcess

pytestmark = pytest.mark.slow


def upload_in_parts(ai: openai.OpenAI, data: bytes, parts: int) -> openai.types.Upload:
    upload = ai.uploads.create(bytes=len(data), filename="adapter.tar", mime_type="application/x-tar",
                               purpose="fine-tune")
    assert (upload.status, upload.file) == ("pending", None)
    size = -(-len(data) // parts)
    chunks = [data[at:at + size] for at in range(0, len(data), size)]
    ids = {index: ai.uploads.parts.create(upload.id, data=chunk).id
           for index, chunk in reversed(list(enumerate(chunks)))}  # parts may arrive in any order
    return ai.uploads.complete(upload.id, part_ids=[ids[i] for i in range(len(chunks))],
                               md5=hashlib.md5(data, usedforsecurity=False).hexdigest())


@pytest.mark.battery(10)
async def test_an_adapter_uploaded_in_parts_becomes_a_file_and_a_fine_tune(
        server: ServerProcess, adapter_dir: Path, tmp_path: Path) -> None:
    tenant = f"parts-{uuid.uuid4().hex[:6]}"
    key, http, ai_async = tenant_client(server, tenant)
    ai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    data = pack(adapter_dir, tmp_path).read_bytes()
    done = await asyncio.to_thread(upload_in_parts, ai, data, 3)
    assert done.status == "completed" and done.file is not None
    assert (done.file.bytes, done.file.purpose, done.file.filename) == (len(data), "fine-tune", "adapter.tar")

    created = http.post("/v1/fine_tuned_models", json={"file_id": done.file.id, "base": BASE, "name": "parts"})
    assert created.status_code == 201, created.text
    model = created.json()["id"]
    try:
        assert (await complete(ai_async, model)).usage.completion_tokens > 0
        with pytest.raises(openai.BadRequestError) as again:  # a completed upload takes no more parts
            ai.uploads.parts.create(done.id, data=b"more")
        assert again.value.param == "upload_id"
        other_key, other_http, _ = tenant_client(server, f"other-{uuid.uuid4().hex[:6]}")
        stolen = other_http.post("/v1/fine_tuned_models",
                                 json={"file_id": done.file.id, "base": BASE, "name": "stolen"})
        assert stolen.status_code == 404 and stolen.json()["error"]["param"] == "file_id"
        other = openai.OpenAI(base_url=f"{server.url}/v1", api_key=other_key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            other.uploads.cancel(done.id)
    finally:
        http.delete(f"/v1/fine_tuned_models/{model}")


def test_sizes_digests_and_cancel_are_checked(server: ServerProcess) -> None:
    key, _http, _ = tenant_client(server, f"sizes-{uuid.uuid4().hex[:6]}")
    ai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    upload = ai.uploads.create(bytes=8, filename="a.tar", mime_type="application/x-tar", purpose="fine-tune")
    first = ai.uploads.parts.create(upload.id, data=b"1234")
    with pytest.raises(openai.BadRequestError) as short:
        ai.uploads.complete(upload.id, part_ids=[first.id])
    assert "4 bytes, not the 8" in short.value.message and short.value.param == "part_ids"
    with pytest.raises(openai.BadRequestError) as too_much:
        ai.uploads.parts.create(upload.id, data=b"123456789")
    assert too_much.value.param == "data"
    second = ai.uploads.parts.create(upload.id, data=b"5678")
    with pytest.raises(openai.BadRequestError) as digest:
        ai.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert digest.value.param == "md5"
    with pytest.raises(openai.BadRequestError) as unknown:
        ai.uploads.complete(upload.id, part_ids=[first.id, "part_" + "0" * 24])
    assert unknown.value.param == "part_ids"
    cancelled = ai.uploads.cancel(upload.id)
    assert (cancelled.status, cancelled.file) == ("cancelled", None)
    with pytest.raises(openai.BadRequestError):
        ai.uploads.complete(upload.id, part_ids=[first.id, second.id])
    with pytest.raises(openai.BadRequestError) as purpose:
        ai.uploads.create(bytes=8, filename="a.jsonl", mime_type="text/plain", purpose="assistants")
    assert purpose.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as unknown_field:
        ai.uploads.create(bytes=8, filename="a.tar", mime_type="application/x-tar", purpose="fine-tune",
                          extra_body={"colour": "red"})
    assert unknown_field.value.param == "colour"
