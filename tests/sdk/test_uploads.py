"""Fine-tune uploads that resume where a stopped run left off, and files sent in parts, with progress."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from meterway import ConflictError, NotFoundError
from tests.finetune.conftest import BASE, train_adapter

if TYPE_CHECKING:
    from pathlib import Path

    from meterway import Client

CHUNK = 64 * 1024


class Stopped(Exception):
    """The 'process' stops mid-upload."""


@pytest.fixture(scope="module")
def adapter(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PEFT LoRA adapter of the base model (the server checks what it is given)."""
    return train_adapter(store_dir, tmp_path_factory.mktemp("sdk-adapter") / "support-bot")


def test_a_stopped_upload_resumes_from_the_server_offset(tenant_client: Client, tenant: str, adapter: Path,
                                                         tmp_path: Path) -> None:
    first: list[int] = []

    def stop_after_one_chunk(done: int, total: int) -> None:
        first.append(done)
        if done > 0:
            raise Stopped

    with pytest.raises(Stopped):
        tenant_client.fine_tunes.upload(adapter, base=BASE, name="bot", chunk_bytes=CHUNK, cache=tmp_path,
                                        progress=stop_after_one_chunk)
    assert first == [0, CHUNK]
    [state] = tmp_path.glob("state-*.json")
    seen: list[tuple[int, int]] = []
    created = tenant_client.fine_tunes.upload(adapter, base=BASE, name="bot", chunk_bytes=CHUNK, cache=tmp_path,
                                              progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == CHUNK  # resumed: the first chunk was not sent again
    assert seen[-1][0] == seen[-1][1] > CHUNK
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert (created.id, created.kind, created.base) == (f"ft:{BASE}:{tenant}:bot", "lora", BASE)
    assert not state.exists()
    assert [m.id for m in tenant_client.fine_tunes.list()] == [created.id]
    assert tenant_client.fine_tunes.get(created.id).sha256 == created.sha256
    with pytest.raises(ConflictError):
        tenant_client.fine_tunes.upload(adapter, base=BASE, name="bot", cache=tmp_path)
    assert tenant_client.fine_tunes.delete(created.id).deleted is True
    with pytest.raises(NotFoundError):
        tenant_client.fine_tunes.get(created.id)


def test_a_large_file_goes_in_parts(tenant_client: Client) -> None:
    data = bytes(range(256)) * 12  # 3,072 bytes: three parts of 1,024
    seen: list[tuple[int, int]] = []
    made = tenant_client.files.create(data, purpose="fine-tune", filename="weights.tar", part_bytes=1024,
                                      progress=lambda sent, total: seen.append((sent, total)))
    assert seen == [(1024, 3072), (2048, 3072), (3072, 3072)]
    assert (made.filename, made.bytes, made.purpose) == ("weights.tar", 3072, "fine-tune")
    assert tenant_client.files.content(made.id) == data
