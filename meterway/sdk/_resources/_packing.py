"""A directory of weights as one deterministic tar: the same files give the same bytes, so that a later run
finds the unfinished upload it left and resumes it instead of starting again."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")


def default_cache() -> Path:
    """Where packed archives and resume state live (``METERWAY_UPLOAD_CACHE`` overrides)."""
    return Path(os.environ.get("METERWAY_UPLOAD_CACHE", Path(tempfile.gettempdir()) / "meterway-uploads"))


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def pack(directory: Path, cache: Path) -> Path:
    """A deterministic tar of ``directory``'s regular, non-hidden files (reused when already packed)."""
    files = _files(directory)
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


def upload_name(archive: Path) -> str:
    """The filename the server is told: an archive's own, else ``upload.tar``."""
    return archive.name if archive.name.endswith(ARCHIVES) else "upload.tar"
