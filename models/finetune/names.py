"""Which file names an upload may contain: relative, no ``..``, safetensors instead of pickles."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from meterway.errors import UploadRejected

# Loading any of these runs pickle, i.e. arbitrary code from the uploader.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz"})
# Weights, configs, tokenizers (sentencepiece ``.model`` is protobuf), chat templates, peft's README.
ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".jinja", ".txt", ".model", ".md"})
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a safe relative path, or ``UploadRejected`` saying why it is not one."""
    if not name or "\x00" in name:
        raise UploadRejected("an uploaded file has an empty or NUL-containing name")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UploadRejected(f"absolute path not allowed in upload: {name!r}")
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise UploadRejected(f"path traversal ('..') not allowed in upload: {name!r}")
    if not parts or len(parts) > 8:
        raise UploadRejected(f"invalid file path in upload: {name!r}")
    for part in parts:
        if not _PART.match(part):
            raise UploadRejected(
                f"invalid file name in upload: {name!r} (letters, digits, '._+-' only; no hidden files)"
            )
    return PurePosixPath(*parts)


def check_file_type(path: PurePosixPath) -> None:
    """Refuse pickles by name, and anything that is not a weight, config or tokenizer file."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UploadRejected(
            f"{path}: pickle-based weight formats ({suffix}) are not accepted; "
            "save the weights as safetensors (safe_serialization=True)"
        )
    if suffix not in ALLOWED_SUFFIXES:
        raise UploadRejected(
            f"{path}: file type {suffix or '(none)'} is not accepted; allowed: "
            f"{', '.join(sorted(ALLOWED_SUFFIXES))}"
        )


def is_archive_name(name: str) -> bool:
    """True for the archive kinds an upload may arrive as (expanded once, never nested)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)
