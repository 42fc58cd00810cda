"""Resumable uploads: a connection broken mid-body keeps what arrived; the client resumes from the offset.

The break is real: a raw socket sends part of a ``PUT`` body and closes. The CLI's uploader is driven through
a transport that cuts one request short the same way, and a later run resumes the session it left.
"""

from __future__ import annotations

import io
import socket
import tarfile
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
import pytest

from meterway import Client
from meterway.sdk import pack_directory as pack
from service.cli_models import add_model_commands
from tests.finetune.conftest import BASE, UploadServer

if TYPE_CHECKING:
    from pathlib import Path


def broken_put(server: UploadServer, upload_id: str, offset: int, total: int, body: bytes, sent: int) -> None:
    """Announce ``body`` but send only its first ``sent`` bytes, wait until they are stored, then hang up."""
    url = urlparse(server.url)
    head = (
        f"PUT /v1/resumable_uploads/{upload_id} HTTP/1.1\r\nHost: {url.netloc}\r\nx-test-tenant: acme\r\n"
        f"Content-Range: bytes {offset}-{offset + len(body) - 1}/{total}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head + body[:sent])
        with server.client() as client:
            deadline = time.monotonic() + 30
            while client.get(f"/v1/resumable_uploads/{upload_id}").json()["offset"] < offset + sent:
                assert time.monotonic() < deadline, "server never stored the bytes it received"
                time.sleep(0.05)


def adapter_tar(adapter_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in sorted(adapter_dir.iterdir()):
            archive.add(file, arcname=file.name)
    return buffer.getvalue()


def test_broken_upload_resumes_from_the_server_offset(upload_server: UploadServer, adapter_dir: Path) -> None:
    data = adapter_tar(adapter_dir)
    total, half = len(data), len(data) // 2
    with upload_server.client() as client:
        session = client.post("/v1/resumable_uploads", json={"bytes": total, "filename": "adapter.tar"}).json()
        upload_id = session["id"]
        assert (session["offset"], session["status"]) == (0, "pending")
        broken_put(upload_server, upload_id, 0, total, data[:half], sent=half // 2)
        status = client.get(f"/v1/resumable_uploads/{upload_id}").json()
        assert status["offset"] == half // 2
        wrong = client.put(
            f"/v1/resumable_uploads/{upload_id}",
            content=data[half:],
            headers={"content-range": f"bytes {half}-{total - 1}/{total}"},
        )
        assert wrong.status_code == 409
        assert wrong.headers["upload-offset"] == str(half // 2)
        done = client.put(
            f"/v1/resumable_uploads/{upload_id}", content=data[half // 2 :], headers={"upload-offset": str(half // 2)}
        )
        assert done.json()["status"] == "complete"
        unfinished = client.post("/v1/resumable_uploads", json={"bytes": 10}).json()["id"]
        assert (
            client.post(
                "/v1/fine_tuned_models",
                json={"upload_id": unfinished, "base": BASE, "name": "x", "kind": "lora"},
            ).status_code
            == 409
        )
        created = client.post(
            "/v1/fine_tuned_models",
            json={"upload_id": upload_id, "base": BASE, "name": "support-bot", "kind": "lora"},
        )
        assert created.status_code == 201, created.text
        assert client.get(f"/v1/resumable_uploads/{upload_id}").status_code == 404  # consumed
        # A name clash is refused before a second upload is consumed: it can be finalised under another name.
        second = client.post("/v1/resumable_uploads", json={"bytes": total}).json()["id"]
        client.put(f"/v1/resumable_uploads/{second}", content=data, headers={"upload-offset": "0"})
        clash = client.post(
            "/v1/fine_tuned_models",
            json={"upload_id": second, "base": BASE, "name": "support-bot", "kind": "lora"},
        )
        assert clash.status_code == 409
        assert client.get(f"/v1/resumable_uploads/{second}").json()["status"] == "complete"
        renamed = client.post(
            "/v1/fine_tuned_models",
            json={"upload_id": second, "base": BASE, "name": "support-bot-2", "kind": "lora"},
        )
        assert renamed.status_code == 201
    stored = next((upload_server.store / "finetunes" / "acme").glob("support-bot-*"))
    assert (stored / "adapter_model.safetensors").read_bytes() == (
        adapter_dir / "adapter_model.safetensors"
    ).read_bytes()


def test_upload_sessions_are_private_and_bounded(upload_server: UploadServer) -> None:
    with upload_server.client("acme") as acme, upload_server.client("globex") as globex:
        upload_id = acme.post("/v1/resumable_uploads", json={"bytes": 4}).json()["id"]
        assert globex.get(f"/v1/resumable_uploads/{upload_id}").status_code == 404
        assert (
            globex.put(
                f"/v1/resumable_uploads/{upload_id}", content=b"abcd", headers={"upload-offset": "0"}
            ).status_code
            == 404
        )
        assert acme.get("/v1/resumable_uploads/../../etc").status_code == 404
        too_much = acme.put(f"/v1/resumable_uploads/{upload_id}", content=b"abcdef", headers={"upload-offset": "0"})
        assert too_much.status_code == 413
        assert acme.delete(f"/v1/resumable_uploads/{upload_id}").json()["deleted"] is True


class CutOnce(httpx.BaseTransport):
    """Forwards to a real transport as tenant acme, but cuts the ``nth`` PUT short after half its body (a
    dropped link)."""

    def __init__(self, nth: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.puts = 0
        self.nth = nth

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["x-test-tenant"] = "acme"
        if request.method == "PUT":
            self.puts += 1
            if self.puts == self.nth:
                body = request.read()

                def half_then_fail() -> Any:
                    yield body[: len(body) // 2]
                    raise httpx.WriteError("connection dropped")

                request = httpx.Request(
                    request.method, request.url, headers=request.headers, content=half_then_fail()
                )
        return self.inner.handle_request(request)


class Stopped(Exception):
    """The upload's process 'dies'."""


def test_uploader_resumes_after_a_dropped_connection(
    upload_server: UploadServer, adapter_dir: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    with Client(upload_server.url, "unused", transport=CutOnce(nth=2)) as client:
        created = client.fine_tunes.upload(adapter_dir, base=BASE, name="support-bot", chunk_bytes=256 * 1024,
                                           cache=tmp_path / "cache",
                                           progress=lambda done, total: seen.append((done, total)))
    assert created.id == f"ft:{BASE}:acme:support-bot"
    assert created.kind == "lora"
    assert seen[-1][0] == seen[-1][1]
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # never went backwards
    assert not list((tmp_path / "cache").glob("state-*"))


def test_second_run_resumes_the_session_the_first_left(
    upload_server: UploadServer, adapter_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    archive = pack(adapter_dir, cache)
    held: list[int] = []

    def die_at_the_break(done: int, _total: int) -> None:
        held.append(done)
        if len(held) > 1:  # the first call is before any chunk; the next follows the broken one
            raise Stopped

    with Client(upload_server.url, "unused", max_retries=0, transport=CutOnce(nth=1)) as failing, \
            pytest.raises(Stopped):
        failing.fine_tunes.upload(adapter_dir, base=BASE, name="support-bot", cache=cache,
                                  chunk_bytes=archive.stat().st_size, progress=die_at_the_break)
    [state] = cache.glob("state-*")
    upload_id = __import__("json").loads(state.read_text())["upload_id"]
    with Client(upload_server.url, "unused", transport=AsTenant("acme")) as client:
        created = client.fine_tunes.upload(adapter_dir, base=BASE, name="support-bot", cache=cache,
                                           chunk_bytes=archive.stat().st_size)
        assert created.id == f"ft:{BASE}:acme:support-bot"
    with upload_server.client() as http:
        assert http.get(f"/v1/resumable_uploads/{upload_id}").status_code == 404
    assert held[-1] < archive.stat().st_size  # what arrived before the break (if anything) was kept


class AsTenant(httpx.HTTPTransport):
    """The network, with the upload server's tenant header on every request (it authenticates by that)."""

    def __init__(self, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["x-test-tenant"] = self.tenant
        return super().handle_request(request)


def test_cli_upload_command(
    upload_server: UploadServer,
    adapter_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    monkeypatch.setenv("METERWAY_UPLOAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("service.cli_models.client",
                        lambda: Client(upload_server.url, "unused", transport=AsTenant("acme")))
    parser = argparse.ArgumentParser()
    add_model_commands(parser.add_subparsers())
    args = parser.parse_args(
        [
            "models",
            "upload",
            str(adapter_dir),
            "--base",
            BASE,
            "--name",
            "support-bot",
            "--input-price",
            "0.2",
            "--chunk-mb",
            "1",
        ]
    )
    args.run(args)
    printed = capsys.readouterr().out
    assert f'"id": "ft:{BASE}:acme:support-bot"' in printed
    assert '"input_price_per_million": "0.2"' in printed
