"""Tenant-private files on disk: ``<root>/<file-id>/data`` and ``meta.json``; another tenant's file is a 404."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterway.errors import NotFound

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterable, Iterator
    from pathlib import Path

PURPOSES = ("fine-tune", "batch")  # what callers upload
OUTPUT = "batch_output"  # what the batch runner writes: its jobs' results
_ID = re.compile(r"^file-[0-9a-f]{24}$")


def owned_meta(root: Path, item_id: str, pattern: re.Pattern[str], owner: str, missing: NotFound) -> dict[str, Any]:
    """``<root>/<item_id>/meta.json`` when the id is well formed and ``owner`` owns it; ``missing`` otherwise, so
    that another tenant's item is as absent as one that never existed."""
    meta_file = root / item_id / "meta.json"
    if not pattern.match(item_id) or not meta_file.exists():
        raise missing
    meta: dict[str, Any] = json.loads(meta_file.read_text())
    if meta["owner"] != owner:
        raise missing
    return meta


@dataclass(frozen=True)
class FileObject:
    """One stored file, as OpenAI's File object describes it."""

    id: str
    owner: str
    bytes: int
    created_at: int
    filename: str
    purpose: str

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


class FileStore:
    """Files under ``root``, each in its own directory, renamed into place only when whole."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def adopt(self, owner: str, source: Path, filename: str, purpose: str) -> FileObject:
        """Move the finished ``source`` (same file system) in as a new file of ``owner``."""
        with self._building() as (file_id, building):
            os.replace(source, building / "data")
            return self._place(file_id, building, owner, filename, purpose)

    def write(self, owner: str, filename: str, purpose: str, chunks: Iterable[bytes]) -> FileObject:
        """A new file of ``owner`` made of ``chunks`` (a batch's results), in place only once whole."""
        with self._building() as (file_id, building):
            with (building / "data").open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            return self._place(file_id, building, owner, filename, purpose)

    def list(self, owner: str, purpose: str | None = None) -> builtins.list[FileObject]:
        """The owner's files (of one purpose when given), newest first."""
        found = []
        for meta_file in self.root.glob("file-*/meta.json") if self.root.exists() else []:
            with contextlib.suppress(FileNotFoundError):  # deleted while the listing runs
                meta = json.loads(meta_file.read_text())
                if meta["owner"] == owner and purpose in (None, meta["purpose"]):
                    found.append(FileObject(meta_file.parent.name, **meta))
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    @contextlib.contextmanager
    def _building(self) -> Iterator[tuple[str, Path]]:
        """A new id and the hidden directory its file is built in; removed if the file never lands."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        building = self.root / f".{file_id}"
        building.mkdir(parents=True, mode=0o700)
        try:
            yield file_id, building
        finally:
            shutil.rmtree(building, ignore_errors=True)  # gone already once renamed into place

    def _place(self, file_id: str, building: Path, owner: str, filename: str, purpose: str) -> FileObject:
        size = (building / "data").stat().st_size
        meta: dict[str, Any] = {"owner": owner, "bytes": size, "created_at": int(time.time()),
                                "filename": filename, "purpose": purpose}
        (building / "meta.json").write_text(json.dumps(meta))
        os.replace(building, self.root / file_id)
        return FileObject(file_id, **meta)

    def get(self, owner: str, file_id: str) -> FileObject:
        """The file, or ``NotFound`` (also for another tenant's)."""
        missing = NotFound(f"No such File object: {file_id}", param="file_id")
        return FileObject(file_id, **owned_meta(self.root, file_id, _ID, owner, missing))

    def data(self, owner: str, file_id: str) -> Path:
        """Where the file's bytes are (read-only for the caller)."""
        return self.root / self.get(owner, file_id).id / "data"

    def delete(self, owner: str, file_id: str) -> FileObject:
        """Remove the file (``NotFound`` as ``get``); what it was."""
        found = self.get(owner, file_id)
        shutil.rmtree(self.root / file_id, ignore_errors=True)
        return found
