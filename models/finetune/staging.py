"""The temporary area an upload lands in before it is checked: every byte is written here, nowhere else.

The area lives inside the model store (``<store>/.staging/<random>``) so that accepted files move into the
content-addressed blobs with a rename, and it is removed whatever happens: a rejected upload leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from meterway.errors import PayloadTooLarge, UploadRejected
from models.finetune.names import check_file_type, is_archive_name, safe_relative

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable
    from types import TracebackType

    from models.finetune.limits import UploadLimits

STAGING_DIR = ".staging"


class StagingArea:
    """Files of one upload under a private temporary directory, with their bytes counted against limits."""

    def __init__(self, store: Path, limits: UploadLimits) -> None:
        self.limits = limits
        self.root = store / STAGING_DIR / uuid.uuid4().hex
        self.files: dict[PurePosixPath, Path] = {}
        self.total_bytes = 0

    def __enter__(self) -> StagingArea:
        self.root.mkdir(parents=True, mode=0o700)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Delete everything this upload wrote."""
        shutil.rmtree(self.root, ignore_errors=True)

    def new_file(self, name: str, *, allow_archive: bool = False) -> tuple[PurePosixPath, Path]:
        """Reserve a staged path for the file called ``name`` (checked for traversal and type)."""
        relative = safe_relative(name)
        if not (allow_archive and is_archive_name(relative.name)):
            check_file_type(relative)
        if relative in self.files:
            raise UploadRejected(f"{relative}: file appears twice in the upload")
        if len(self.files) >= self.limits.max_files:
            raise UploadRejected(f"upload holds more than {self.limits.max_files} files")
        target = self.root / "files" / relative
        # ``relative`` has no '..' and no absolute part, so ``target`` is inside ``root``; check anyway.
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise UploadRejected(f"path escapes the upload area: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.files[relative] = target
        return relative, target

    def count(self, size: int) -> None:
        """Add ``size`` written bytes to the total; 413 once past the limit."""
        self.total_bytes += size
        if self.total_bytes > self.limits.max_extracted_bytes:
            raise PayloadTooLarge(f"upload exceeds the {self.limits.max_extracted_bytes}-byte limit")

    def write_chunks(self, name: str, chunks: Iterable[bytes]) -> Path:
        """Write a file from synchronous chunks (an archive member), counting as it goes."""
        _, target = self.new_file(name)
        with target.open("wb") as handle:
            for chunk in chunks:
                self.count(len(chunk))
                handle.write(chunk)
        return target

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes]) -> Path:
        """Write a file (or one archive) from a network stream without holding it in memory."""
        _, target = self.new_file(name, allow_archive=True)
        with target.open("wb") as handle:
            async for chunk in chunks:
                self.count(len(chunk))
                handle.write(chunk)
        return target

    def adopt(self, name: str, source: Path) -> Path:
        """Move a finished resumable upload (one archive) into the area."""
        _, target = self.new_file(name, allow_archive=True)
        self.count(source.stat().st_size)
        os.replace(source, target)
        return target

    def link(self, name: str, source: Path) -> Path:
        """Hard-link a stored file (one archive) into the area; the file itself stays where it is."""
        _, target = self.new_file(name, allow_archive=True)
        self.count(source.stat().st_size)
        os.link(source, target)
        return target

    def take(self, relative: PurePosixPath) -> Path:
        """Remove a file from the upload's list (an archive about to be expanded); it stays on disk."""
        return self.files.pop(relative)

    def strip_common_root(self) -> None:
        """``my-adapter/adapter_config.json`` → ``adapter_config.json`` when every file shares one folder."""
        tops = {p.parts[0] for p in self.files}
        if len(tops) != 1 or any(len(p.parts) < 2 for p in self.files):
            return
        self.files = {PurePosixPath(*p.parts[1:]): path for p, path in self.files.items()}
