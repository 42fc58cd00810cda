"""OpenAI's Files API at ``/v1/files``: upload (multipart), list, retrieve, content, delete (``client.files``).

A file is private to its tenant and lives in the model store's ``.files/`` area, never in the database. A file
of purpose ``batch`` is checked line by line before it is kept (``service.batch_input``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Request, delete, get, post
from litestar.di import Provide
from litestar.params import QueryParameter
from litestar.response import File

from files.store import PURPOSES, FileObject, FileStore
from meterway.errors import InvalidRequest, MeterwayError
from models.finetune.multipart_form import receive_form
from service.auth import Principal
from service.batch_input import validate_batch_file
from service.http.bodies import limited_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from pathlib import Path

TAGS = ["Files"]
FORM_OVERHEAD = 64 * 1024


class _Incoming:
    """The form's one file, streamed to a temporary file next to the store (the same file system)."""

    def __init__(self, root: Path) -> None:
        self.root, self.filename = root, ""
        self.path: Path | None = None

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes]) -> Path | None:
        if self.path is not None:
            raise InvalidRequest("a file upload holds one file, in the field `file`", param="file")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path = self.root / f".incoming-{uuid.uuid4().hex}"
        self.filename = name
        with path.open("wb") as out:
            async for chunk in chunks:
                out.write(chunk)
        return None


@post("/v1/files", summary="Upload a file", tags=TAGS, status_code=200, request_max_body_size=None)
async def upload_file(principal: Principal, files: FileStore, file_limit: int,
                      request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A multipart form with the file in ``file`` and its ``purpose`` (``batch`` or ``fine-tune``)."""
    incoming = _Incoming(files.root)
    try:
        fields = await receive_form(limited_body(request, file_limit + FORM_OVERHEAD),
                                    request.headers.get("content-type", ""), incoming, file_field="file")
        purpose = _purpose(fields)
        if incoming.path is None:
            raise InvalidRequest("the form has no file in the field `file`", param="file")
        if purpose == "batch":
            await asyncio.to_thread(validate_batch_file, incoming.path)
        return files.adopt(principal.billing_tenant, incoming.path, incoming.filename, purpose).body()
    except (MeterwayError, asyncio.CancelledError):
        if incoming.path is not None:
            with contextlib.suppress(FileNotFoundError):
                incoming.path.unlink()
        raise


def _purpose(fields: dict[str, str]) -> str:
    extra = sorted(set(fields) - {"purpose"})
    if extra:
        raise InvalidRequest(f"unexpected form field {extra[0]!r}; a file upload has `file` and `purpose`",
                             param=extra[0])
    purpose = fields.get("purpose", "")
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose")
    return purpose


@get("/v1/files", summary="List files", tags=TAGS)
async def list_files(principal: Principal, files: FileStore,
                     purpose: Annotated[str | None, QueryParameter(max_length=32)] = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 10_000,
                     after: Annotated[str | None, QueryParameter(max_length=40)] = None,
                     order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    """The caller's files, newest first by default; ``after`` is the last id of the previous page."""
    found = files.listing(principal.billing_tenant, purpose)
    if order == "asc":
        found.reverse()
    ids = [f.id for f in found]
    start = ids.index(after) + 1 if after in ids else 0
    page: list[FileObject] = found[start:start + limit]
    return {"object": "list", "data": [f.body() for f in page], "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None, "has_more": start + limit < len(found)}


@get("/v1/files/{file_id:str}", summary="Retrieve a file", tags=TAGS)
async def retrieve_file(file_id: str, principal: Principal, files: FileStore) -> dict[str, Any]:
    return files.get(principal.billing_tenant, file_id).body()


@get("/v1/files/{file_id:str}/content", summary="Retrieve a file's content", tags=TAGS,
     media_type="application/octet-stream")
async def file_content(file_id: str, principal: Principal, files: FileStore) -> File:
    """The file's bytes as they were uploaded (or, for a batch's results, written)."""
    found = files.get(principal.billing_tenant, file_id)
    kind = "application/jsonl" if found.filename.endswith(".jsonl") else "application/octet-stream"
    return File(path=files.data(principal.billing_tenant, file_id), filename=found.filename, media_type=kind,
                content_disposition_type="attachment")


@delete("/v1/files/{file_id:str}", summary="Delete a file", tags=TAGS, status_code=200)
async def delete_file(file_id: str, principal: Principal, files: FileStore) -> dict[str, Any]:
    gone = files.delete(principal.billing_tenant, file_id)
    return {"id": gone.id, "object": "file", "deleted": True}


file_handlers = [upload_file, list_files, retrieve_file, file_content, delete_file]


def file_dependencies(max_bytes: int) -> dict[str, Provide]:
    """``file_limit``: the largest file ``POST /v1/files`` keeps (the store itself comes with the uploads')."""
    return {"file_limit": Provide(lambda: max_bytes, use_cache=True, sync_to_thread=False)}
