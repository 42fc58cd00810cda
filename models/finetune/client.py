"""Client side of fine-tune uploads: pack a directory, send it in resumable chunks, finalise.

Used by ``meterway models upload``. A directory is packed into a deterministic tar (same files → same bytes),
so a later run finds the unfinished upload session it left (kept in a small state file) and resumes from the
offset the server reports instead of starting again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CHUNK_BYTES = 8 * 1024 * 1024
MAX_RETRIES = 5
Progress = Callable[[int, int], None]  # (bytes the server holds, total)


@dataclass
class UploadJob:
    """What to upload and as which fine-tune."""

    path: Path
    base: str
    name: str
    kind: str | None = None  # None: 'lora' when adapter_config.json is present, else 'full'
    input_price: str | None = None
    output_price: str | None = None
    chunk_bytes: int = CHUNK_BYTES
    extra: dict[str, str] = field(default_factory=dict)

    def resolved_kind(self) -> str:
        if self.kind:
            return self.kind
        if self.path.is_dir():
            return "lora" if (self.path / "adapter_config.json").exists() else "full"
        return "lora"


class UploadFailed(Exception):
    """The server refused the upload; ``status`` and ``message`` are its answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def pack(directory: Path, cache: Path) -> Path:
    """A deterministic tar of ``directory``'s regular, non-hidden files (reused when already packed)."""
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    fingerprint = hashlib.sha256(str(directory.resolve()).encode())
    for file in files:
        stat = file.stat()
        fingerprint.update(f"{file.relative_to(directory)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache / f"{fingerprint.hexdigest()[:24]}.tar"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
        for file in files:
            info = tarfile.TarInfo(file.relative_to(directory).as_posix())
            info.size, info.mode, info.mtime = file.stat().st_size, 0o644, 0
            with file.open("rb") as handle:
                archive.addfile(info, handle)
    partial.rename(target)
    return target


class ResumableUploader:
    """Sends one file through ``/v1/resumable_uploads`` and creates the fine-tune from it."""

    def __init__(
        self, client: httpx.Client, cache: Path | None = None, progress: Progress | None = None
    ) -> None:
        self.client = client
        self.cache = cache or Path(tempfile.gettempdir()) / "meterway-uploads"
        self.progress = progress or (lambda _done, _total: None)

    def upload(self, job: UploadJob) -> dict[str, Any]:
        """Upload ``job.path`` (a directory or an archive) and return the created fine-tune."""
        archive = pack(job.path, self.cache) if job.path.is_dir() else job.path
        state_file = self._state_file(archive, job)
        upload_id = self._session(archive, state_file)
        self._send(upload_id, archive, job.chunk_bytes)
        body = {
            "upload_id": upload_id,
            "base": job.base,
            "name": job.name,
            "kind": job.resolved_kind(),
            "input_price_per_million": job.input_price,
            "output_price_per_million": job.output_price,
            **job.extra,
        }
        created = self._json(
            self.client.post("/v1/fine_tuned_models", json={k: v for k, v in body.items() if v is not None})
        )
        state_file.unlink(missing_ok=True)
        return created

    def _state_file(self, archive: Path, job: UploadJob) -> Path:
        key = f"{self.client.base_url}|{archive.resolve()}|{archive.stat().st_size}|{job.base}|{job.name}"
        return self.cache / f"state-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"

    def _session(self, archive: Path, state_file: Path) -> str:
        """The unfinished session a previous run left, or a new one."""
        if state_file.exists():
            upload_id = json.loads(state_file.read_text())["upload_id"]
            with contextlib.suppress(UploadFailed):
                self._json(self.client.get(f"/v1/resumable_uploads/{upload_id}"))
                return str(upload_id)
        filename = (
            archive.name if archive.name.endswith((".tar", ".tar.gz", ".tgz", ".zip")) else "upload.tar"
        )
        created = self._json(
            self.client.post("/v1/resumable_uploads", json={"bytes": archive.stat().st_size, "filename": filename})
        )
        self.cache.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"upload_id": created["id"]}))
        return str(created["id"])

    def _send(self, upload_id: str, archive: Path, chunk_bytes: int) -> None:
        """PUT chunks from the server's offset; after a broken connection ask the offset again and go on."""
        total = archive.stat().st_size
        failures = 0
        offset = int(self._json(self.client.get(f"/v1/resumable_uploads/{upload_id}"))["offset"])
        self.progress(offset, total)
        with archive.open("rb") as handle:
            while offset < total:
                handle.seek(offset)
                chunk = handle.read(chunk_bytes)
                headers = {
                    "content-range": f"bytes {offset}-{offset + len(chunk) - 1}/{total}",
                    "content-type": "application/octet-stream",
                }
                try:
                    offset = int(
                        self._json(
                            self.client.put(f"/v1/resumable_uploads/{upload_id}", content=chunk, headers=headers)
                        )["offset"]
                    )
                    failures = 0
                except (httpx.TransportError, UploadFailed) as exc:
                    failures += 1
                    if failures > MAX_RETRIES or (
                        isinstance(exc, UploadFailed) and exc.status not in (409, 500, 502, 503)
                    ):
                        raise
                    time.sleep(min(0.2 * 2**failures, 5.0))
                    offset = int(self._json(self.client.get(f"/v1/resumable_uploads/{upload_id}"))["offset"])
                self.progress(offset, total)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            message = body.get("error", {}).get("message") if isinstance(body, dict) else response.text
            raise UploadFailed(response.status_code, str(message))
        return dict(body)


def default_cache() -> Path:
    """Where packed archives and resume state live (``METERWAY_UPLOAD_CACHE`` overrides)."""
    return Path(os.environ.get("METERWAY_UPLOAD_CACHE", Path(tempfile.gettempdir()) / "meterway-uploads"))
