"""OpenAI's Files API at ``/v1/files``: upload (multipart), list, retrieve, content, delete (``client.files``).

A file is private to its tenant and lives in the model store's ``.files/`` area, never in the database. An
upload streams to disk (never whole in memory) and is refused (413) past the server's upload limit; a file
of purpose ``batch`` is checked line by line before it is kept (``service.batch_input``).
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Request, delete, get, post
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, RequestBody
from litestar.openapi.spec import Schema as SchemaObject
from litestar.params import QueryParameter
from litestar.response import File

from files.store import PURPOSES, FileObject, FileStore
from meterway.errors import InvalidRequest, PayloadTooLarge
from meterway.roles import MANAGE, READ
from models.finetune.multipart_form import receive_form
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.batch_input import validate_batch_file
from service.guard import needs
from service.http.bodies import limited_body
from service.routes.openai import paths

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator
    from pathlib import Path

TAGS = ["Files"]
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the purpose field around the file's bytes
_BINARY = SchemaObject(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


@dataclass
class _UploadForm(Operation):
    """Documents the multipart form of ``POST /v1/files``, which the handler streams itself."""

    def __post_init__(self) -> None:
        purpose = SchemaObject(type=OpenAPIType.STRING, enum=list(PURPOSES),
                               description="batch: a JSONL batch input; fine-tune: an adapter or weights archive")
        form = SchemaObject(type=OpenAPIType.OBJECT, required=["file", "purpose"],
                            properties={"file": _BINARY, "purpose": purpose})
        self.request_body = RequestBody(content={"multipart/form-data": OpenAPIMediaType(schema=form)},
                                        required=True)


@dataclass
class _FileBytes(Operation):
    """Documents both media types the content route answers: JSONL for a ``.jsonl`` file, bytes otherwise."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {kind: OpenAPIMediaType(schema=_BINARY)
                          for kind in ("application/octet-stream", "application/jsonl")}


class _Incoming:
    """The form's one file, streamed to a temporary file beside the store's files (the same file system)."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit, self.filename = root, limit, ""
        self.path: Path | None = None

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes]) -> Path | None:
        if self.path is not None:
            raise InvalidRequest("a file upload holds one file, in the field `file`", param="file")
        self.root.mkdir(parents=True, exist_ok=True)
        self.path, self.filename, size = self.root / f".incoming-{uuid.uuid4().hex}", name, 0
        with self.path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.limit:
                    raise PayloadTooLarge(f"the file exceeds the {self.limit}-byte upload limit")
                out.write(chunk)
        return None


@asynccontextmanager
async def _received(request: Request[Any, Any, Any], root: Path,
                    limit: int) -> AsyncIterator[tuple[Path, str, str]]:
    """The uploaded file's temporary path, its name and its purpose; the path is gone afterwards unless the
    store adopted it."""
    incoming = _Incoming(root, limit)
    try:
        fields = await receive_form(limited_body(request, limit + FORM_OVERHEAD),
                                    request.headers.get("content-type", ""), incoming, file_field="file")
        purpose = _purpose(fields)
        if incoming.path is None:
            raise InvalidRequest("the form has no file in the field `file`", param="file")
        yield incoming.path, incoming.filename, purpose
    finally:
        if incoming.path is not None:
            incoming.path.unlink(missing_ok=True)


def _purpose(fields: dict[str, str]) -> str:
    extra = sorted(set(fields) - {"purpose"})
    if extra:
        raise InvalidRequest(f"unexpected form field {extra[0]!r}; a file upload has `file` and `purpose`",
                             param=extra[0])
    purpose = fields.get("purpose", "")
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose")
    return purpose


@post(paths("/files"), summary="Upload a file", tags=TAGS, status_code=200, request_max_body_size=None,
      operation_class=_UploadForm, opt=needs(MANAGE))
async def upload_file(principal: Principal, files: FileStore, file_limit: int,
                      request: Request[Any, Any, Any], audit: AuditTrail) -> dict[str, Any]:
    """A multipart form with the file in ``file`` and its ``purpose`` (``batch`` or ``fine-tune``)."""
    async with _received(request, files.root, file_limit) as (path, filename, purpose):
        if purpose == "batch":
            await asyncio.to_thread(validate_batch_file, path)
        body = files.adopt(principal.billing_tenant, path, filename, purpose).body()
    await audit.record("file.upload", body["id"], after={k: body.get(k) for k in ("filename", "purpose", "bytes")})
    return body


@get(paths("/files"), summary="List files", tags=TAGS, opt=needs(READ))
async def list_files(principal: Principal, files: FileStore,
                     purpose: Annotated[str | None, QueryParameter(max_length=32)] = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 10_000,
                     after: Annotated[str | None, QueryParameter(max_length=40)] = None,
                     order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    """The caller's files, newest first by default; ``after`` is the last id of the previous page."""
    found = files.list(principal.billing_tenant, purpose)
    return _page(found[::-1] if order == "asc" else found, after, limit)


def _page(found: list[FileObject], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's list object: up to ``limit`` files following the one ``after`` names (from the start if none)."""
    ids = [f.id for f in found]
    start = ids.index(after) + 1 if after in ids else 0
    page = found[start:start + limit]
    return {"object": "list", "data": [f.body() for f in page], "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None, "has_more": start + limit < len(found)}


@get(paths("/files/{file_id:str}"), summary="Retrieve a file", tags=TAGS, opt=needs(READ))
async def retrieve_file(file_id: str, principal: Principal, files: FileStore) -> dict[str, Any]:
    """The File object; another tenant's file is as absent as one that never existed (404)."""
    return files.get(principal.billing_tenant, file_id).body()


@get(paths("/files/{file_id:str}/content"), summary="Retrieve a file's content", tags=TAGS,
     media_type="application/octet-stream", operation_class=_FileBytes, opt=needs(READ))
async def file_content(file_id: str, principal: Principal, files: FileStore) -> File:
    """The file's bytes as they were uploaded (or, for a batch's results, written), streamed."""
    found = files.get(principal.billing_tenant, file_id)
    kind = "application/jsonl" if found.filename.endswith(".jsonl") else "application/octet-stream"
    return File(path=files.data(principal.billing_tenant, file_id), filename=found.filename, media_type=kind,
                content_disposition_type="attachment")


@delete(paths("/files/{file_id:str}"), summary="Delete a file", tags=TAGS, status_code=200, opt=needs(MANAGE))
async def delete_file(file_id: str, principal: Principal, files: FileStore, audit: AuditTrail) -> dict[str, Any]:
    """Delete the file; OpenAI's deletion object."""
    gone = files.delete(principal.billing_tenant, file_id)
    await audit.record("file.delete", gone.id, before={"filename": gone.filename, "purpose": gone.purpose})
    return {"id": gone.id, "object": "file", "deleted": True}


file_handlers = [upload_file, list_files, retrieve_file, file_content, delete_file]


def file_dependencies(max_bytes: int) -> dict[str, Provide]:
    """``file_limit``: the largest file ``POST /v1/files`` keeps (the store itself comes with the uploads')."""
    return {"file_limit": Provide(lambda: max_bytes, use_cache=True, sync_to_thread=False)}
