"""Expand a .tar / .tar.gz / .zip upload safely: regular files only, bounded size and ratio.

Nothing is extracted with ``extractall``: each member is checked (name, type, declared size) and then copied
through the staging area, which counts the bytes really produced, so an archive that lies about its sizes is
caught while it expands.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from typing import IO, TYPE_CHECKING, Protocol

from meterway.errors import UploadRejected
from models.finetune.names import safe_relative

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from models.finetune.staging import StagingArea

CHUNK = 1024 * 1024


class ArchiveFormat(Protocol):
    """One archive kind: recognises its files and expands them into a staging area."""

    def matches(self, path: Path) -> bool:
        """True when ``path`` holds an archive of this kind (by content, not by name)."""

    def expand(self, path: Path, area: StagingArea, label: str) -> None:
        """Expand every member of ``path`` into ``area`` or raise ``UploadRejected``."""


def _copy(source: IO[bytes], declared: int, label: str, name: str) -> Iterator[bytes]:
    """Yield the member's bytes, refusing more than it declared (a lying header is a bomb)."""
    produced = 0
    while chunk := source.read(CHUNK):
        produced += len(chunk)
        if produced > declared:
            raise UploadRejected(f"{label}: member {name!r} expands past its declared size")
        yield chunk


def _check_declared(label: str, archive_bytes: int, declared: int, area: StagingArea) -> None:
    limits = area.limits
    if declared > limits.max_extracted_bytes:
        raise UploadRejected(
            f"{label}: archive would expand to {declared} bytes, over the "
            f"{limits.max_extracted_bytes}-byte limit"
        )
    if declared > max(archive_bytes, 1) * limits.max_ratio and declared > CHUNK:
        raise UploadRejected(
            f"{label}: archive expands {declared / max(archive_bytes, 1):.0f}x, over the "
            f"{limits.max_ratio:.0f}x ratio limit (archive bomb)"
        )


class TarFormat:
    """POSIX tar, optionally gzip-compressed. Links, devices and FIFOs are refused."""

    def matches(self, path: Path) -> bool:
        return tarfile.is_tarfile(path)

    def expand(self, path: Path, area: StagingArea, label: str) -> None:
        try:
            with tarfile.open(path, mode="r:*") as archive:
                members = self._members(archive, area.limits.max_files, label)
                self._check_members(members, label)
                _check_declared(label, path.stat().st_size, sum(m.size for m in members if m.isfile()), area)
                for member in members:
                    if member.isfile():
                        source = archive.extractfile(member)
                        assert source is not None  # a regular file always has data
                        area.write_chunks(member.name, _copy(source, member.size, label, member.name))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UploadRejected(f"{label}: not a readable tar archive ({exc})") from None

    @staticmethod
    def _members(archive: tarfile.TarFile, limit: int, label: str) -> list[tarfile.TarInfo]:
        """The members, read one header at a time (a tar of millions of empty entries stops early)."""
        members = []
        for member in archive:
            members.append(member)
            if len(members) > limit:
                raise UploadRejected(f"{label}: archive holds more than {limit} entries")
        return members

    @staticmethod
    def _check_members(members: list[tarfile.TarInfo], label: str) -> None:
        for member in members:
            safe_relative(member.name)
            if member.issym() or member.islnk():
                raise UploadRejected(f"{label}: links are not allowed in uploads ({member.name!r})")
            if not (member.isfile() or member.isdir()):
                raise UploadRejected(
                    f"{label}: only regular files are allowed in uploads ({member.name!r} "
                    "is a device, FIFO or other special file)"
                )


class ZipFormat:
    """Zip archives. Symlinks (stored as a Unix mode) and encrypted members are refused."""

    def matches(self, path: Path) -> bool:
        return zipfile.is_zipfile(path)

    def expand(self, path: Path, area: StagingArea, label: str) -> None:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                if len(members) > area.limits.max_files:
                    raise UploadRejected(f"{label}: archive holds more than {area.limits.max_files} entries")
                self._check_members(members, label)
                _check_declared(label, path.stat().st_size, sum(m.file_size for m in members), area)
                for member in members:
                    if not member.is_dir():
                        with archive.open(member) as source:
                            area.write_chunks(
                                member.filename, _copy(source, member.file_size, label, member.filename)
                            )
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
            raise UploadRejected(f"{label}: not a readable zip archive ({exc})") from None

    @staticmethod
    def _check_members(members: list[zipfile.ZipInfo], label: str) -> None:
        for member in members:
            safe_relative(member.filename)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadRejected(f"{label}: links are not allowed in uploads ({member.filename!r})")
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UploadRejected(
                    f"{label}: only regular files are allowed in uploads ({member.filename!r})"
                )
            if member.flag_bits & 0x1:
                raise UploadRejected(f"{label}: encrypted archive members are not accepted")


ARCHIVE_FORMATS: tuple[ArchiveFormat, ...] = (ZipFormat(), TarFormat())


def expand_archive(path: Path, area: StagingArea, label: str) -> None:
    """Expand ``path`` with the first format that recognises it, or refuse it."""
    for archive_format in ARCHIVE_FORMATS:
        if archive_format.matches(path):
            archive_format.expand(path, area, label)
            return
    raise UploadRejected(f"{label}: not a tar or zip archive")
