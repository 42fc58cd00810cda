"""Resumable uploads: a session on disk that bytes are appended to at an offset, so a broken upload resumes.

Protocol (like tus, in plain HTTP): ``POST /v1/resumable_uploads {"bytes": N}`` creates a session; ``PUT
/v1/resumable_uploads/{id}`` with ``Upload-Offset: k`` (or ``Content-Range: bytes k-j/N``) appends; ``GET`` reports the
offset received so far, which is where a client resumes after a broken connection; ``POST
/v1/fine_tuned_models {"upload_id": ...}`` finalises. Sessions belong to one tenant; another's is a 404.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from meterway.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from pathlib import Path

    from models.finetune.limits import UploadLimits

UPLOADS_DIR = ".uploads"
SESSION_TTL_S = 24 * 3600
_ID = re.compile(r"^upl_[0-9a-f]{32}$")


@dataclass(frozen=True)
class UploadStatus:
    """Where a resumable upload stands; ``offset`` is how many bytes the server holds."""

    id: str
    bytes: int
    offset: int
    filename: str
    created_at: int

    @property
    def complete(self) -> bool:
        return self.offset == self.bytes

    def body(self) -> dict[str, object]:
        """The JSON the upload routes answer with."""
        return {"object": "upload", **asdict(self), "status": "complete" if self.complete else "pending"}


class UploadSessions:
    """Resumable upload sessions under ``<store>/.uploads`` (same file system as the blobs)."""

    def __init__(self, store: Path, limits: UploadLimits) -> None:
        self.root = store / UPLOADS_DIR
        self.limits = limits

    def create(self, owner: str, total: int, filename: str = "upload.tar") -> UploadStatus:
        """Open a session for ``total`` bytes; 413 past the upload limit."""
        if total <= 0:
            raise InvalidRequest("bytes must be a positive integer", param="bytes")
        if total > self.limits.max_upload_bytes:
            raise PayloadTooLarge(
                f"upload of {total} bytes exceeds the {self.limits.max_upload_bytes}-byte limit"
            )
        self._expire()
        upload_id = f"upl_{uuid.uuid4().hex}"
        directory = self.root / upload_id
        directory.mkdir(parents=True, mode=0o700)
        meta = {"owner": owner, "bytes": total, "filename": filename, "created_at": int(time.time())}
        (directory / "meta.json").write_text(json.dumps(meta))
        (directory / "data").touch()
        return self.status(owner, upload_id)

    def status(self, owner: str, upload_id: str) -> UploadStatus:
        """The session's state, or ``NotFound`` (also for another tenant's session)."""
        meta = self._meta(owner, upload_id)
        offset = (self.root / upload_id / "data").stat().st_size
        return UploadStatus(upload_id, meta["bytes"], offset, meta["filename"], meta["created_at"])

    async def append(
        self, owner: str, upload_id: str, offset: int, chunks: AsyncIterable[bytes]
    ) -> UploadStatus:
        """Append a body at ``offset`` (must equal the bytes held: 409 otherwise, with the right offset).

        Bytes are flushed as they arrive, so after a broken connection ``status`` shows what was kept.
        """
        current = self.status(owner, upload_id)
        if offset != current.offset:
            raise Conflict(
                f"upload offset is {current.offset}, not {offset}; resume from {current.offset}",
                param="offset",
                headers={"upload-offset": str(current.offset)},
            )
        directory = self.root / upload_id
        with (directory / "lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict("another request is appending to this upload", param="offset") from None
            with (directory / "data").open("ab") as handle:
                position = handle.tell()
                async for chunk in chunks:
                    if position + len(chunk) > current.bytes:
                        raise PayloadTooLarge(f"upload sends more than the {current.bytes} bytes it declared")
                    handle.write(chunk)
                    handle.flush()
                    position += len(chunk)
        return self.status(owner, upload_id)

    def data(self, owner: str, upload_id: str) -> tuple[Path, UploadStatus]:
        """The finished upload's file (the caller moves it away), or 409 while bytes are missing."""
        status = self.status(owner, upload_id)
        if not status.complete:
            raise Conflict(
                f"upload {upload_id} holds {status.offset} of {status.bytes} bytes; finish it first",
                param="upload_id",
            )
        return self.root / upload_id / "data", status

    def remove(self, owner: str, upload_id: str) -> None:
        """Drop a session and its bytes."""
        self._meta(owner, upload_id)
        shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def _meta(self, owner: str, upload_id: str) -> dict[str, Any]:
        meta_file = self.root / upload_id / "meta.json"
        if not _ID.match(upload_id) or not meta_file.exists():
            raise NotFound(f"upload '{upload_id}' does not exist", param="upload_id")
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        if meta["owner"] != owner:
            raise NotFound(f"upload '{upload_id}' does not exist", param="upload_id")
        return meta

    def _expire(self) -> None:
        """Remove sessions abandoned for a day (checked when a new one opens)."""
        if not self.root.exists():
            return
        cutoff = time.time() - SESSION_TTL_S
        for directory in self.root.iterdir():
            if directory.stat().st_mtime < cutoff:
                shutil.rmtree(directory, ignore_errors=True)
