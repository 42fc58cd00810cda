"""``client.files``: the Files API; a large fine-tune file goes through ``/v1/uploads`` in parts."""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from meterway.sdk._config import content
from meterway.sdk._resources._base import Resource
from meterway.sdk._steps import Call
from meterway.sdk._types import Deleted, FileObject

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from meterway.sdk._pages import Pages

    Progress = Callable[[int, int], None]  # (bytes sent, total bytes)

PART_BYTES = 64 * 1024 * 1024  # the server's largest part
MIME = {".jsonl": "application/jsonl", ".json": "application/json"}


class Files(Resource):
    """Upload, list, read, download and delete files."""

    def create(self, file: str | Path | bytes | IO[bytes], *, purpose: str, filename: str | None = None,
               part_bytes: int = PART_BYTES, progress: Progress | None = None) -> FileObject:
        """Upload a file (a path, bytes or a binary file object). A ``fine-tune`` file larger than
        ``part_bytes`` goes through the Uploads API in parts, ``progress(sent, total)`` after each."""
        name, data = _read(file, filename)
        steps = (_in_parts if purpose == "fine-tune" and len(data) > part_bytes else _whole)(
            name, data, purpose, max(1, part_bytes), progress or _quiet)
        return self._client._run(steps)  # type: ignore[no-any-return]

    def list(self, *, purpose: str | None = None, limit: int | None = None,
             after: str | None = None) -> Pages[FileObject]:
        """Every file, optionally of one ``purpose`` (``limit`` per page)."""
        return self._pages(FileObject, "/v1/files", purpose=purpose, limit=limit, after=after)

    def get(self, file_id: str) -> FileObject:
        """One file's metadata."""
        return self._one(FileObject, "GET", f"/v1/files/{file_id}")

    def content(self, file_id: str) -> bytes:
        """A file's bytes (``client.stream("GET", f"/v1/files/{id}/content")`` for one too large to hold)."""
        return self._client._fetch("GET", f"/v1/files/{file_id}/content", content)  # type: ignore[no-any-return]

    def delete(self, file_id: str) -> Deleted:
        """Delete a file."""
        return self._deleted("DELETE", f"/v1/files/{file_id}")


def _quiet(_sent: int, _total: int) -> None:
    pass


def _read(file: str | Path | bytes | IO[bytes], filename: str | None) -> tuple[str, bytes]:
    if isinstance(file, bytes):
        return filename or "file", file
    if isinstance(file, str | Path):
        return filename or Path(file).name, Path(file).read_bytes()
    return filename or Path(str(getattr(file, "name", "file"))).name, file.read()


def _mime(name: str) -> str:
    return MIME.get(Path(name).suffix, "application/octet-stream")


def _whole(name: str, data: bytes, purpose: str, _part: int,
           progress: Progress) -> Generator[Call, Any, FileObject]:
    created = yield Call("POST", "/v1/files", {"data": {"purpose": purpose},
                                               "files": {"file": (name, data, _mime(name))}})
    progress(len(data), len(data))
    return FileObject.from_dict(created)


def _in_parts(name: str, data: bytes, purpose: str, part_bytes: int,
              progress: Progress) -> Generator[Call, Any, FileObject]:
    opened = yield Call("POST", "/v1/uploads", {"json": {"bytes": len(data), "filename": name,
                                                         "mime_type": _mime(name), "purpose": purpose}})
    parts: list[str] = []
    for start in range(0, len(data), part_bytes):
        part = yield Call("POST", f"/v1/uploads/{opened['id']}/parts",
                          {"files": {"data": ("part", data[start:start + part_bytes], "application/octet-stream")}})
        parts.append(part["id"])
        progress(min(start + part_bytes, len(data)), len(data))
    done = yield Call("POST", f"/v1/uploads/{opened['id']}/complete", {"json": {"part_ids": parts}})
    return FileObject.from_dict(done["file"])
