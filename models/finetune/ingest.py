"""From staged upload to stored fine-tune: expand archives, check against the base, store content-addressed.

Blocking file work (hashing, archive expansion, header reads): the service runs it in a thread.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import structlog

from meterway.errors import UploadRejected
from models.finetune.archive import expand_archive
from models.finetune.base_model import load_base
from models.finetune.blobs import BlobStore
from models.finetune.checks import check_upload
from models.finetune.names import check_file_type, is_archive_name

if TYPE_CHECKING:
    from models.finetune.staging import StagingArea

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredFineTune:
    """Where an accepted upload now lives in the store and what it holds."""

    store_path: PurePosixPath  # relative to the model store
    sha256: str  # digest of the manifest
    size_bytes: int
    summary: dict[str, Any]
    created: bool  # False when an identical directory was already there (then it is not ours to remove)


def expand_archives(area: StagingArea) -> None:
    """An upload of one archive becomes its members; then every file name and type is checked."""
    if len(area.files) == 1:
        ((relative, path),) = area.files.items()
        if is_archive_name(relative.name):
            area.take(relative)
            expand_archive(path, area, relative.name)
            path.unlink()
    for relative in area.files:
        if is_archive_name(relative.name):
            raise UploadRejected(
                f"{relative}: an archive must be the only file of an upload (and is never expanded twice)"
            )
        check_file_type(relative)
    if not area.files:
        raise UploadRejected("the upload holds no files")
    area.strip_common_root()


def ingest(store: Path, area: StagingArea, *, kind: str, base: str, tenant: str, name: str) -> StoredFineTune:
    """Check the staged upload against ``base`` and store it; a rejection leaves the store untouched."""
    expand_archives(area)
    checked = check_upload(kind, dict(area.files), load_base(store, base), area.limits)
    for relative, source in checked.inherited.items():
        # Copied, not linked: the base's own files must not become (read-only) blobs.
        shutil.copyfile(source, area.new_file(str(relative))[1])
    blobs = BlobStore(store)
    files = dict(area.files)
    assembled, digest, size = blobs.assemble(files, area.root / "out")
    target, created = blobs.install(assembled, blobs.finetune_dir(tenant, name, digest))
    log.info(
        "fine-tune stored",
        kind=kind,
        base=base,
        tenant=tenant,
        name=name,
        sha256=digest,
        bytes=size,
        **checked.summary,
    )
    return StoredFineTune(
        PurePosixPath(target.relative_to(store).as_posix()), digest, size, checked.summary, created
    )
