"""OpenAI's Batch API at ``/v1/batches``: create, list, retrieve, cancel (the openai SDK's ``client.batches``).

Each handler decodes, calls one ``BatchService`` method and encodes; the jobs run in ``service.batch_runner``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import get, post
from litestar.di import Provide
from litestar.params import QueryParameter
from msgspec import Meta

from batches.service import BatchService, NewBatch
from files.store import FileStore
from meterway.errors import AuthenticationFailed, InvalidRequest
from service.auth import Principal
from service.batch_input import validate_batch_file
from service.http.fields import Body

TAGS = ["Batches"]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]


class BatchCreate(Body):
    """``POST /v1/batches``: which uploaded file of requests to run, against which route."""

    input_file_id: Annotated[str, Meta(min_length=1, max_length=40)]
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    completion_window: Literal["24h"]
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=16)] | None = None


def _owner(principal: Principal) -> str:
    if principal.endpoint is not None:
        raise AuthenticationFailed("Incorrect API key provided: an endpoint key calls only its own endpoint.")
    return principal.billing_tenant


@post("/v1/batches", summary="Create a batch", tags=TAGS, status_code=200)
async def create_batch(data: BatchCreate, principal: Principal, batches: BatchService,
                       files: FileStore) -> dict[str, Any]:
    """Queue a job over an uploaded ``batch`` file whose every line names ``endpoint``."""
    owner = _owner(principal)
    found = files.get(owner, data.input_file_id)
    if found.purpose != "batch":
        raise InvalidRequest(f"file {found.id} has purpose {found.purpose!r}; a batch reads a file of purpose "
                             "'batch'", param="input_file_id")
    urls = validate_batch_file(files.data(owner, found.id)).urls
    if urls != {data.endpoint}:
        raise InvalidRequest(f"the file's lines name {', '.join(sorted(urls))}; every line must name the batch's "
                             f"endpoint {data.endpoint}", param="endpoint")
    return await batches.create(NewBatch(owner, principal.billing_key, found.id, data.endpoint,
                                         data.completion_window, data.metadata))


@get("/v1/batches", summary="List batches", tags=TAGS)
async def list_batches(principal: Principal, batches: BatchService,
                       after: Annotated[str | None, QueryParameter(max_length=40)] = None,
                       limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20) -> dict[str, Any]:
    """The caller's batches, newest first; ``after`` is the last id of the previous page."""
    data, more = await batches.page(_owner(principal), after, limit)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@get("/v1/batches/{batch_id:str}", summary="Retrieve a batch", tags=TAGS)
async def retrieve_batch(batch_id: str, principal: Principal, batches: BatchService) -> dict[str, Any]:
    """Its status, request counts and, once finished, its output and error files."""
    return await batches.get(_owner(principal), batch_id)


@post("/v1/batches/{batch_id:str}/cancel", summary="Cancel a batch", tags=TAGS, status_code=200)
async def cancel_batch(batch_id: str, principal: Principal, batches: BatchService) -> dict[str, Any]:
    """Stop within seconds; the lines already answered stay in the output and are the only ones billed."""
    return await batches.cancel(_owner(principal), batch_id)


batch_handlers = [create_batch, list_batches, retrieve_batch, cancel_batch]


def batch_dependencies(service: BatchService) -> dict[str, Provide]:
    return {"batches": Provide(lambda: service, use_cache=True, sync_to_thread=False)}
