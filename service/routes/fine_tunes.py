"""Fine-tune routes: resumable uploads and ``/v1/fine_tuned_models`` (create, list, get, delete).

Each handler decodes, calls one ``FineTuneService`` / ``UploadSessions`` method, and encodes. Bodies of the
upload routes are streamed to disk (``request_max_body_size=None`` here; the service counts bytes itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import Provide
from msgspec import Meta

from files.store import FileStore
from meterway.errors import InvalidRequest
from meterway.roles import MANAGE, READ
from models.finetune.catalog import epoch_seconds
from models.finetune.multipart_form import receive_form
from models.finetune.service import FineTuneService
from models.finetune.uploads import UploadSessions
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.guard import needs
from service.http.bodies import limited_body

if TYPE_CHECKING:

    from models.finetune.fine_tunes import FineTuneCatalog
    from models.finetune.staging import StagingArea
    from models.finetune.tables import FineTunedModelRow

MAX_JSON_BYTES = 64 * 1024
UPLOAD_FILENAME = "upload.tar"


class CreateUpload(msgspec.Struct, kw_only=True):
    """``POST /v1/resumable_uploads``: how many bytes will follow (and, optionally, the archive's name)."""

    bytes: Annotated[int, Meta(ge=1)]
    filename: str = UPLOAD_FILENAME


class CreateFineTune(msgspec.Struct, kw_only=True):
    """``POST /v1/fine_tuned_models`` as JSON, from a finished resumable upload or a file (an archive)."""

    upload_id: str | None = None  # meterway's resumable upload, consumed
    file_id: str | None = None  # a file of purpose fine-tune (OpenAI's Uploads API), kept
    base: str
    name: str
    kind: str = "lora"
    tenant: str | None = None  # meterway extension: the admin names the owner
    input_price_per_million: str | None = None
    output_price_per_million: str | None = None


def fine_tune_body(row: FineTunedModelRow) -> dict[str, Any]:
    """The wire form of a fine-tune (prices as exact decimal strings)."""
    return {
        "id": row.id,
        "object": "fine_tuned_model",
        "created": epoch_seconds(row.created_at),
        "owned_by": row.tenant,
        "base": row.base,
        "kind": row.kind,
        "name": row.name,
        "sha256": row.sha256,
        "size_bytes": row.size_bytes,
        "status": "ready",
        "input_price_per_million": format(row.input_price_per_million, "f"),
        "output_price_per_million": format(row.output_price_per_million, "f"),
    }


async def _json(request: Request[Any, Any, Any], kind: type[Any]) -> Any:
    body = b"".join([chunk async for chunk in limited_body(request, MAX_JSON_BYTES)])
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None


def _offset(request: Request[Any, Any, Any]) -> int:
    """The append offset from ``Upload-Offset`` or ``Content-Range: bytes start-end/total``."""
    raw = request.headers.get("upload-offset")
    content_range = request.headers.get("content-range")
    if raw is None and content_range and content_range.startswith("bytes "):
        raw = content_range[6:].split("-", 1)[0]
    if raw is None or not raw.strip().isdigit():
        raise InvalidRequest(
            "send the append offset as Upload-Offset or Content-Range: bytes <start>-<end>/<total>",
            param="offset",
        )
    return int(raw)


@post("/v1/resumable_uploads", summary="Open a resumable upload", tags=["Fine-tunes"], status_code=201,
      opt=needs(MANAGE))
async def create_upload(data: CreateUpload, principal: Principal, uploads: UploadSessions) -> dict[str, Any]:
    """Open a session for ``bytes`` bytes; 413 past the server's upload limit."""
    return uploads.create(principal.billing_tenant, data.bytes, data.filename).body()


@get("/v1/resumable_uploads/{upload_id:str}", summary="Where a resumable upload stands", tags=["Fine-tunes"],
     opt=needs(MANAGE))
async def get_upload(upload_id: str, principal: Principal, uploads: UploadSessions) -> dict[str, Any]:
    """The offset received so far: where a client resumes after a broken connection."""
    return uploads.status(principal.billing_tenant, upload_id).body()


@put(
    "/v1/resumable_uploads/{upload_id:str}",
    summary="Append bytes to a resumable upload",
    tags=["Fine-tunes"],
    request_max_body_size=None,
    opt=needs(MANAGE),
)
async def append_upload(
    upload_id: str, principal: Principal, uploads: UploadSessions, request: Request[Any, Any, Any]
) -> dict[str, Any]:
    """Append the body at the given offset (409 with the right offset when it is not the current end)."""
    status = await uploads.append(
        principal.billing_tenant,
        upload_id,
        _offset(request),
        limited_body(request, uploads.limits.max_upload_bytes),
    )
    return status.body()


@delete(
    "/v1/resumable_uploads/{upload_id:str}", summary="Abandon a resumable upload", tags=["Fine-tunes"], status_code=200,
    opt=needs(MANAGE),
)
async def delete_upload(upload_id: str, principal: Principal, uploads: UploadSessions) -> dict[str, Any]:
    """Drop the session and its bytes."""
    uploads.remove(principal.billing_tenant, upload_id)
    return {"id": upload_id, "object": "upload", "deleted": True}


@post(
    "/v1/fine_tuned_models",
    summary="Upload a fine-tuned model",
    tags=["Fine-tunes"],
    status_code=201,
    request_max_body_size=None,
    opt=needs(MANAGE),
)
async def create_fine_tune(
    principal: Principal,
    fine_tunes: FineTuneService,
    uploads: UploadSessions,
    files: FileStore,
    request: Request[Any, Any, Any],
    audit: AuditTrail,
) -> dict[str, Any]:
    """A multipart upload (fields + files or one archive), or JSON naming a finished resumable upload."""
    content_type = request.headers.get("content-type", "")
    with fine_tunes.staging() as area:
        if content_type.startswith("multipart/"):
            fields = await receive_form(
                limited_body(request, fine_tunes.limits.max_upload_bytes), content_type, area
            )
            new = fine_tunes.new_request(
                principal,
                base=fields.get("base", ""),
                name=fields.get("name", ""),
                kind=fields.get("kind", "lora"),
                tenant=fields.get("tenant"),
                input_price=fields.get("input_price_per_million"),
                output_price=fields.get("output_price_per_million"),
            )
            row = await fine_tunes.create(new, area)
        else:
            data: CreateFineTune = await _json(request, CreateFineTune)
            new = fine_tunes.new_request(
                principal,
                base=data.base,
                name=data.name,
                kind=data.kind,
                tenant=data.tenant,
                input_price=data.input_price_per_million,
                output_price=data.output_price_per_million,
            )
            await fine_tunes.ensure_new(new)  # a name clash must not consume the upload
            _take_archive(data, principal.billing_tenant, uploads, files, area)
            row = await fine_tunes.create(new, area)
    body = fine_tune_body(row)
    await audit.record("fine_tune.create", row.id, after={k: body[k] for k in ("base", "kind", "name", "sha256")},
                       tenant=row.tenant)
    return body


def _take_archive(data: CreateFineTune, owner: str, uploads: UploadSessions, files: FileStore,
                  area: StagingArea) -> None:
    """Put the archive ``data`` names into ``area``: a resumable upload is consumed, a file is linked."""
    if (data.upload_id is None) == (data.file_id is None):
        raise InvalidRequest("name the archive with exactly one of upload_id or file_id", param="file_id")
    if data.upload_id is not None:
        path, status = uploads.data(owner, data.upload_id)
        area.adopt(status.filename, path)
        uploads.remove(owner, data.upload_id)
        return
    assert data.file_id is not None
    file = files.get(owner, data.file_id)
    if file.purpose != "fine-tune":
        raise InvalidRequest(f"file {file.id} has purpose {file.purpose!r}, not 'fine-tune'", param="file_id")
    area.link(file.filename, files.data(owner, file.id))


@get("/v1/fine_tuned_models", summary="List your fine-tuned models", tags=["Fine-tunes"], opt=needs(READ))
async def list_fine_tunes(principal: Principal, fine_tunes: FineTuneService) -> dict[str, Any]:
    """The caller's live fine-tunes."""
    return {"object": "list", "data": [fine_tune_body(row) for row in await fine_tunes.list(principal)]}


@get("/v1/fine_tuned_models/{model_id:str}", summary="Get a fine-tuned model", tags=["Fine-tunes"],
     opt=needs(READ))
async def get_fine_tune(model_id: str, principal: Principal, fine_tunes: FineTuneService) -> dict[str, Any]:
    """One fine-tune; 404 ``model_not_found`` for another tenant's, as for one that does not exist."""
    return fine_tune_body(await fine_tunes.get(principal, model_id))


@delete(
    "/v1/fine_tuned_models/{model_id:str}",
    summary="Delete a fine-tuned model",
    tags=["Fine-tunes"],
    status_code=200,
    opt=needs(MANAGE),
)
async def delete_fine_tune(
    model_id: str, principal: Principal, fine_tunes: FineTuneService, audit: AuditTrail
) -> dict[str, Any]:
    """Delete the fine-tune and its files (OpenAI's delete-model answer)."""
    row = await fine_tunes.delete(principal, model_id)
    await audit.record("fine_tune.delete", row.id, tenant=row.tenant)
    return {"id": row.id, "object": "model", "deleted": True}


fine_tune_handlers = [
    create_upload,
    get_upload,
    append_upload,
    delete_upload,
    create_fine_tune,
    list_fine_tunes,
    get_fine_tune,
    delete_fine_tune,
]


def fine_tune_dependencies(catalog: FineTuneCatalog) -> dict[str, Provide]:
    """What the fine-tune handlers take: ``fine_tunes`` and ``uploads``."""
    return {"fine_tunes": Provide(lambda: catalog.service, use_cache=True, sync_to_thread=False),
            "uploads": Provide(lambda: catalog.uploads, use_cache=True, sync_to_thread=False)}
