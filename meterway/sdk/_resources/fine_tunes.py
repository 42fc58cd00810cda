"""``client.fine_tunes``: upload fine-tuned weights (resumable, with progress), list, read and delete them.

An upload goes through ``/v1/resumable_uploads``: the file is sent in chunks, and after a broken connection
(in the same run or a later one: the session id is kept in a small state file) it resumes from the offset
the server reports. Then ``POST /v1/fine_tuned_models`` turns the finished upload into the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meterway.sdk._errors import APIConnectionError, ConflictError, InternalServerError, NotFoundError
from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._resources._packing import default_cache, pack, upload_name
from meterway.sdk._steps import Call
from meterway.sdk._types import Deleted, FineTunedModel

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    Progress = Callable[[int, int], None]  # (bytes the server holds, total bytes)

CHUNK_BYTES = 8 * 1024 * 1024
MAX_FAILURES = 5
RESUMABLE = (ConflictError, InternalServerError, APIConnectionError)  # ask the offset again and go on


def resolved_kind(path: Path, kind: str | None) -> str:
    """``lora`` when a directory holds ``adapter_config.json`` (or for an archive), else ``full``."""
    if kind:
        return kind
    return "full" if path.is_dir() and not (path / "adapter_config.json").exists() else "lora"


class FineTunes(Resource):
    """Fine-tuned models: ``ft:<base>:<tenant>:<name>``."""

    def upload(self, path: str | Path, *, base: str, name: str, kind: str | None = None,
               input_price: str | None = None, output_price: str | None = None, tenant: str | None = None,
               chunk_bytes: int = CHUNK_BYTES, progress: Progress | None = None,
               cache: Path | None = None) -> FineTunedModel:
        """Upload a PEFT LoRA adapter or full weights (a directory, packed as a tar, or an archive) and create
        the fine-tune. ``progress(done, total)`` is called after every chunk; a run that stops (an exception,
        a lost connection) is resumed by calling ``upload`` again with the same arguments."""
        source = Path(path)
        archive = pack(source, cache or default_cache()) if source.is_dir() else source
        body = body_of(base=base, name=name, kind=resolved_kind(source, kind), tenant=tenant,
                       input_price_per_million=input_price, output_price_per_million=output_price)
        state = _state_file(cache or default_cache(), self._client.base_url, archive, base, name)
        steps = _upload(archive, body, state, max(1, chunk_bytes), progress or _quiet)
        return self._client._run(steps)  # type: ignore[no-any-return]

    def list(self) -> list[FineTunedModel]:
        """The caller's fine-tuned models."""
        return self._list(FineTunedModel, "/v1/fine_tuned_models")

    def get(self, model: str) -> FineTunedModel:
        """One fine-tuned model."""
        return self._one(FineTunedModel, "GET", f"/v1/fine_tuned_models/{model}")

    def delete(self, model: str) -> Deleted:
        """Delete a fine-tuned model (it can no longer be called)."""
        return self._deleted("DELETE", f"/v1/fine_tuned_models/{model}")


def _quiet(_done: int, _total: int) -> None:
    pass


def _state_file(cache: Path, base_url: str, archive: Path, base: str, name: str) -> Path:
    key = f"{base_url}|{archive.resolve()}|{archive.stat().st_size}|{base}|{name}"
    return cache / f"state-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _upload(archive: Path, body: dict[str, Any], state: Path, chunk_bytes: int,
            progress: Progress) -> Generator[Call, Any, FineTunedModel]:
    upload_id = yield from _session(archive, state)
    yield from _send(upload_id, archive, chunk_bytes, progress)
    created = yield Call("POST", "/v1/fine_tuned_models", {"json": {"upload_id": upload_id, **body}})
    state.unlink(missing_ok=True)
    return FineTunedModel.from_dict(created)


def _session(archive: Path, state: Path) -> Generator[Call, Any, str]:
    """The unfinished session a previous run left, or a new one."""
    if state.exists():
        upload_id = str(json.loads(state.read_text())["upload_id"])
        try:
            yield Call("GET", f"/v1/resumable_uploads/{upload_id}")
            return upload_id
        except NotFoundError:
            pass
    created = yield Call("POST", "/v1/resumable_uploads",
                         {"json": {"bytes": archive.stat().st_size, "filename": upload_name(archive)}})
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"upload_id": created["id"]}))
    return str(created["id"])


def _send(upload_id: str, archive: Path, chunk_bytes: int, progress: Progress) -> Generator[Call, Any, None]:
    """PUT chunks from the server's offset; after a refused or broken chunk ask the offset again."""
    where = Call("GET", f"/v1/resumable_uploads/{upload_id}")
    total, failures = archive.stat().st_size, 0
    offset = int((yield where)["offset"])
    progress(offset, total)
    with archive.open("rb") as handle:
        while offset < total:
            handle.seek(offset)
            chunk = handle.read(chunk_bytes)
            headers = {"content-range": f"bytes {offset}-{offset + len(chunk) - 1}/{total}",
                       "content-type": "application/octet-stream"}
            try:
                answer = yield Call("PUT", f"/v1/resumable_uploads/{upload_id}",
                                    {"content": chunk, "headers": headers})
                offset, failures = int(answer["offset"]), 0
            except RESUMABLE:
                failures += 1
                if failures > MAX_FAILURES:
                    raise
                offset = int((yield where)["offset"])
            progress(offset, total)
