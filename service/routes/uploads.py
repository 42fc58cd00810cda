"""OpenAI's Uploads API at ``/v1/uploads``: create, add part, complete, cancel (the openai SDK's
``client.uploads``). Each handler decodes, calls one ``Uploads`` method, and encodes; a part's multipart body
is streamed to disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Request, post
from litestar.di import Provide
from msgspec import Meta

from files.store import FileStore
from files.uploads import MAX_PART_BYTES, Uploads
from meterway.errors import InvalidRequest
from meterway.roles import MANAGE
from models.finetune.multipart_form import receive_form
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.bodies import limited_body
from service.http.fields import Body

if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from pathlib import Path

FORM_OVERHEAD = 64 * 1024  # boundaries and part headers around the part's bytes


class UploadCreate(Body):
    """``POST /v1/uploads``: the file the parts will make."""

    bytes: Annotated[int, Meta(ge=1)]
    filename: Annotated[str, Meta(min_length=1, max_length=255)]
    mime_type: Annotated[str, Meta(min_length=1, max_length=255)]
    purpose: Literal["fine-tune"]  # the Files API's batch purpose arrives with the batch issue


class UploadComplete(Body):
    """``POST /v1/uploads/{id}/complete``: the parts in the file's order, and optionally its MD5."""

    part_ids: list[str]
    md5: Annotated[str, Meta(pattern="^[0-9a-fA-F]{32}$")] | None = None


@post("/v1/uploads", summary="Create an upload (OpenAI's Uploads API)", tags=["Files"], status_code=200,
      opt=needs(MANAGE))
async def create_upload(data: UploadCreate, principal: Principal, openai_uploads: Uploads) -> dict[str, Any]:
    """Open an upload of ``bytes`` bytes that parts are added to; it expires after an hour."""
    return openai_uploads.create(principal.billing_tenant, total=data.bytes, filename=data.filename,
                                 purpose=data.purpose, mime_type=data.mime_type)


class _OnePart:
    """Takes the form's one file (field ``data``) as the upload's next part."""

    def __init__(self, uploads: Uploads, owner: str, upload_id: str) -> None:
        self.uploads, self.owner, self.upload_id = uploads, owner, upload_id
        self.part: dict[str, Any] | None = None

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes]) -> Path | None:
        if self.part is not None:
            raise InvalidRequest("a part is one file, sent as the form field `data`", param="data")
        self.part = await self.uploads.add_part(self.owner, self.upload_id, chunks)
        return None


@post("/v1/uploads/{upload_id:str}/parts", summary="Add a part to an upload", tags=["Files"], status_code=200,
      request_max_body_size=None, opt=needs(MANAGE))
async def add_upload_part(upload_id: str, principal: Principal, openai_uploads: Uploads,
                          request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A multipart form whose field ``data`` holds up to 64 MiB of the file; parts may arrive in any order."""
    sink = _OnePart(openai_uploads, principal.billing_tenant, upload_id)
    fields = await receive_form(limited_body(request, MAX_PART_BYTES + FORM_OVERHEAD),
                                request.headers.get("content-type", ""), sink, file_field="data")
    if fields:
        raise InvalidRequest(f"unexpected form field {sorted(fields)[0]!r}; a part is the file field `data`",
                             param=sorted(fields)[0])
    if sink.part is None:
        raise InvalidRequest("the form has no file in the field `data`", param="data")
    return sink.part


@post("/v1/uploads/{upload_id:str}/complete", summary="Complete an upload into a file", tags=["Files"],
      status_code=200, opt=needs(MANAGE))
async def complete_upload(upload_id: str, data: UploadComplete, principal: Principal,
                          openai_uploads: Uploads, audit: AuditTrail) -> dict[str, Any]:
    """Join the parts in ``part_ids`` order; the upload's ``file`` is then a File object."""
    upload = await openai_uploads.complete(principal.billing_tenant, upload_id, data.part_ids, data.md5)
    file = upload.get("file") or {}
    await audit.record("file.upload", str(file.get("id", upload_id)),
                       after={"upload_id": upload_id, **{k: file.get(k) for k in ("filename", "purpose", "bytes")}})
    return upload


@post("/v1/uploads/{upload_id:str}/cancel", summary="Cancel an upload", tags=["Files"], status_code=200,
      opt=needs(MANAGE))
async def cancel_upload(upload_id: str, principal: Principal, openai_uploads: Uploads) -> dict[str, Any]:
    """Cancel a pending upload; its parts are dropped and no part can be added after."""
    return openai_uploads.cancel(principal.billing_tenant, upload_id)


upload_handlers = [create_upload, add_upload_part, complete_upload, cancel_upload]


def upload_dependencies(store: Path, max_bytes: int) -> dict[str, Provide]:
    """What the upload handlers (and the fine-tune route, for ``file_id``) take: ``openai_uploads``, ``files``."""
    files = FileStore(store / ".files")
    uploads = Uploads(store / ".openai-uploads", files, max_bytes)
    return {"files": Provide(lambda: files, use_cache=True, sync_to_thread=False),
            "openai_uploads": Provide(lambda: uploads, use_cache=True, sync_to_thread=False)}
