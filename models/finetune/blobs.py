"""Content-addressed storage of fine-tune files: ``<store>/blobs/sha256/<digest>``, one copy per content.

A fine-tune's directory (what a worker loads) is made of hard links to blobs, so uploading the same bytes
twice stores them once, and a blob whose link count falls to one belongs to no fine-tune any more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from models.store.layout import COMPLETE_MARKER

CHUNK = 1024 * 1024
FINETUNES_DIR = "finetunes"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """The blobs of one model store and the fine-tune directories built from them."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.blobs = store / "blobs" / "sha256"

    def blob(self, digest: str) -> Path:
        return self.blobs / digest

    def put(self, file: Path) -> str:
        """Make ``file``'s content a blob (a hard link, no copy) and return its digest."""
        digest = sha256_file(file)
        self.blobs.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, self.blob(digest))
            os.chmod(self.blob(digest), 0o444)
        except FileExistsError:
            pass  # the same bytes are already stored: keep the existing blob
        return digest

    def assemble(self, files: dict[PurePosixPath, Path], workdir: Path) -> tuple[Path, str, int]:
        """Lay ``files`` out in ``workdir`` as links to blobs; returns (directory, manifest digest, bytes)."""
        staging = workdir / "assembled"
        staging.mkdir(parents=True)
        manifest: dict[str, str] = {}
        size = 0
        for relative, file in sorted(files.items()):
            digest = self.put(file)
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._link(file, digest, destination)
            manifest[str(relative)] = digest
            size += destination.stat().st_size
        body = json.dumps({"files": manifest}, sort_keys=True, indent=1)
        (staging / MANIFEST).write_text(body)
        (staging / COMPLETE_MARKER).write_text("fine-tune\n")
        return staging, hashlib.sha256(body.encode()).hexdigest(), size

    def install(self, assembled: Path, relative: PurePosixPath) -> tuple[Path, bool]:
        """Rename an assembled directory into place (a worker never sees half of it); (path, created).

        The name holds tenant, name and manifest digest, so an existing directory has the same files.
        """
        target = self.store / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            assembled.rename(target)
        except OSError:
            if not (target / MANIFEST).exists():
                raise
            shutil.rmtree(assembled)
            return target, False
        return target, True

    def _link(self, file: Path, digest: str, destination: Path) -> None:
        try:
            os.link(self.blob(digest), destination)
        except FileNotFoundError:
            # A concurrent delete collected the blob between put() and here: store our copy again.
            self.put(file)
            os.link(self.blob(digest), destination)

    def remove(self, directory: Path) -> None:
        """Delete a fine-tune directory and every blob no other fine-tune still links to."""
        manifest_file = directory / MANIFEST
        digests = (
            set(json.loads(manifest_file.read_text())["files"].values()) if manifest_file.exists() else set()
        )
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            directory.parent.rmdir()  # the tenant's folder, once its last fine-tune is gone
        for digest in digests:
            blob = self.blob(digest)
            try:
                if blob.stat().st_nlink == 1:
                    blob.unlink()
            except FileNotFoundError:
                pass

    def finetune_dir(self, tenant: str, name: str, digest: str) -> PurePosixPath:
        """The store-relative directory of a fine-tune (what ``ModelSpec`` names)."""
        safe_tenant = re.sub(r"[^A-Za-z0-9_-]", "_", tenant)[:64] or "_"
        return PurePosixPath(FINETUNES_DIR, safe_tenant, f"{name}-{digest[:12]}")
