"""OpenAI's Uploads API: an upload is opened for a byte count, takes parts (in any order, in parallel), and
on ``complete`` with the parts' order becomes a ``File``; ``cancel`` drops it. An upload expires an hour
after it is opened, as OpenAI's do.

Parts are written to ``<root>/<upload-id>/parts/`` under a temporary name and renamed when whole, so a part
cut off mid-body is never counted; a lock file serialises the state changes (a part landing, complete,
cancel) of one upload across the gateway's processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from files.store import PURPOSES, FileStore, owned_meta
from meterway.errors import InvalidRequest, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterator
    from pathlib import Path

UPLOAD_TTL_S = 3600
MAX_PART_BYTES = 64 * 1024 * 1024  # OpenAI's part limit
_UPLOAD_ID = re.compile(r"^upload_[0-9a-f]{24}$")
_PART_ID = re.compile(r"^part_[0-9a-f]{24}$")


class Uploads:
    """Upload sessions under ``root`` that complete into ``files`` (the same file system)."""

    def __init__(self, root: Path, files: FileStore, max_bytes: int) -> None:
        self.root, self.files, self.max_bytes = root, files, max_bytes

    def create(self, owner: str, *, total: int, filename: str, purpose: str, mime_type: str) -> dict[str, Any]:
        """Open an upload of ``total`` bytes; 413 past the server's upload limit."""
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose {purpose!r} is not supported here; use one of {', '.join(PURPOSES)}",
                                 param="purpose")
        if total > self.max_bytes:
            raise PayloadTooLarge(f"an upload of {total} bytes exceeds the {self.max_bytes}-byte limit")
        self._expire()
        upload_id = f"upload_{uuid.uuid4().hex[:24]}"
        (self.root / upload_id / "parts").mkdir(parents=True, mode=0o700)
        now = int(time.time())
        meta = {"owner": owner, "bytes": total, "filename": filename, "purpose": purpose, "mime_type": mime_type,
                "created_at": now, "expires_at": now + UPLOAD_TTL_S, "status": "pending", "file_id": None}
        self._write(upload_id, meta)
        return self._body(upload_id, meta)

    async def add_part(self, owner: str, upload_id: str, chunks: AsyncIterable[bytes]) -> dict[str, Any]:
        """Store one part (at most 64 MiB) of a pending upload."""
        self._pending(owner, upload_id)  # refused before any byte is written
        part_id = f"part_{uuid.uuid4().hex[:24]}"
        parts = self.root / upload_id / "parts"
        partial, size = parts / f".{part_id}", 0
        try:
            with partial.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > MAX_PART_BYTES:
                        raise PayloadTooLarge(f"a part may hold at most {MAX_PART_BYTES} bytes")
                    handle.write(chunk)
            if size == 0:
                raise InvalidRequest("the part's `data` is empty", param="data")
            with self._locked(upload_id):
                meta = self._pending(owner, upload_id)
                held = sum(path.stat().st_size for path in parts.glob("part_*"))
                if held + size > meta["bytes"]:
                    raise InvalidRequest(f"the parts would hold {held + size} bytes, more than the {meta['bytes']} "
                                         "this upload declared", param="data")
                partial.rename(parts / part_id)
        finally:
            partial.unlink(missing_ok=True)
        return {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": upload_id}

    async def complete(self, owner: str, upload_id: str, part_ids: list[str], md5: str | None) -> dict[str, Any]:
        """Join the parts in ``part_ids`` order into a File; the byte count (and ``md5`` if given) must match."""
        with self._locked(upload_id):
            meta = self._pending(owner, upload_id)
            paths = self._parts(upload_id, part_ids)
            assembled = self.root / upload_id / "assembled"
            digest = await asyncio.to_thread(_join, paths, assembled)
            size = assembled.stat().st_size
            if size != meta["bytes"]:
                assembled.unlink()
                raise InvalidRequest(f"the parts hold {size} bytes, not the {meta['bytes']} this upload declared",
                                     param="part_ids")
            if md5 is not None and md5.lower() != digest:
                assembled.unlink()
                raise InvalidRequest(f"the parts' MD5 is {digest}, not {md5}", param="md5")
            file = self.files.adopt(owner, assembled, meta["filename"], meta["purpose"])
            meta.update(status="completed", file_id=file.id)
            self._write(upload_id, meta)
            shutil.rmtree(self.root / upload_id / "parts", ignore_errors=True)
        return self._body(upload_id, meta)

    def cancel(self, owner: str, upload_id: str) -> dict[str, Any]:
        """Cancel a pending upload and drop its parts."""
        with self._locked(upload_id):
            meta = self._pending(owner, upload_id)
            meta["status"] = "cancelled"
            self._write(upload_id, meta)
            shutil.rmtree(self.root / upload_id / "parts", ignore_errors=True)
        return self._body(upload_id, meta)

    def _parts(self, upload_id: str, part_ids: list[str]) -> list[Path]:
        if not part_ids:
            raise InvalidRequest("part_ids must name at least one part", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids names a part twice", param="part_ids")
        parts = self.root / upload_id / "parts"
        for part_id in part_ids:
            if not _PART_ID.match(part_id) or not (parts / part_id).exists():
                raise InvalidRequest(f"part {part_id!r} is not a part of upload {upload_id}", param="part_ids")
        return [parts / part_id for part_id in part_ids]

    def _pending(self, owner: str, upload_id: str) -> dict[str, Any]:
        meta = self._meta(owner, upload_id)
        if meta["status"] == "pending" and meta["expires_at"] <= time.time():
            meta["status"] = "expired"
        if meta["status"] != "pending":
            raise InvalidRequest(f"upload {upload_id} is {meta['status']}; only a pending upload can change",
                                 param="upload_id")
        return meta

    def _meta(self, owner: str, upload_id: str) -> dict[str, Any]:
        return owned_meta(self.root, upload_id, _UPLOAD_ID, owner,
                          NotFound(f"No such upload: {upload_id}", param="upload_id"))

    def _write(self, upload_id: str, meta: dict[str, Any]) -> None:
        temporary = self.root / upload_id / ".meta.json"
        temporary.write_text(json.dumps(meta))
        temporary.replace(self.root / upload_id / "meta.json")

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        if not _UPLOAD_ID.match(upload_id) or not (self.root / upload_id).is_dir():
            raise NotFound(f"No such upload: {upload_id}", param="upload_id")
        with (self.root / upload_id / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _body(self, upload_id: str, meta: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(meta["owner"], meta["file_id"]).body() if meta["file_id"] else None
        return {"id": upload_id, "object": "upload", "bytes": meta["bytes"], "created_at": meta["created_at"],
                "filename": meta["filename"], "purpose": meta["purpose"], "status": meta["status"],
                "expires_at": meta["expires_at"], "file": file}

    def _expire(self) -> None:
        """Remove uploads past their hour (or finished a day ago), checked when a new one opens."""
        if not self.root.exists():
            return
        cutoff = time.time() - 24 * 3600
        for directory in self.root.iterdir():
            meta_file = directory / "meta.json"
            if meta_file.exists() and (json.loads(meta_file.read_text())["expires_at"] <= time.time()
                                       or meta_file.stat().st_mtime < cutoff):
                shutil.rmtree(directory, ignore_errors=True)


def _join(paths: list[Path], target: Path) -> str:
    """Concatenate ``paths`` into ``target``; the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()
