"""How much an upload may hold: sizes, archive expansion, file counts."""

from __future__ import annotations

from dataclasses import dataclass

from models.finetune.safetensors_header import MAX_HEADER_BYTES


@dataclass(frozen=True)
class UploadLimits:
    """Bounds every upload is checked against while it streams and while an archive expands."""

    max_upload_bytes: int = 2 * 1024 * 1024 * 1024  # bytes on the wire (413 past it)
    max_extracted_bytes: int = 2 * 1024 * 1024 * 1024  # bytes after expanding an archive
    max_ratio: float = 20.0  # expanded / archived: weights barely compress, so more is a bomb
    max_files: int = 256
    max_header_bytes: int = MAX_HEADER_BYTES
    max_json_bytes: int = 64 * 1024 * 1024  # config and tokenizer files are parsed in memory

    @classmethod
    def from_upload_limit(cls, max_upload_bytes: int) -> UploadLimits:
        """The limits for a server whose ``server.max_upload_bytes`` is ``max_upload_bytes``."""
        return cls(max_upload_bytes=max_upload_bytes, max_extracted_bytes=max_upload_bytes)
