"""OpenAI's Batch API at ``/v1/batches``: create, list, retrieve, cancel (the openai SDK's ``client.batches``).

The same routes are at every batch endpoint's ``scoring_uri`` (``/endpoints/{name}/v1/batches``): a job created
there runs on the endpoint's default deployment at that moment, and the endpoint lists only its own jobs. Each
handler decodes, calls one ``BatchService`` method and encodes; the jobs run in ``service.batch_runner``.
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
from meterway.roles import MANAGE, READ
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.batch_input import validate_batch_file
from service.guard import needs
from service.http.fields import Body
from service.routes.openai import paths
from service.routing import Routes, Via

TAGS = ["Batches"]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]


class BatchCreate(Body):
    """``POST /v1/batches``: which uploaded file of requests to run, against which route."""

    input_file_id: Annotated[str, Meta(min_length=1, max_length=40)]
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    completion_window: Literal["24h"]
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=16)] | None = None


def _owner(principal: Principal, via: Via) -> str:
    if principal.endpoint is not None and via.endpoint is None:
        raise AuthenticationFailed("Incorrect API key provided: an endpoint key calls only its own endpoint.")
    return principal.billing_tenant


@post(paths("/batches"), summary="Create a batch", tags=TAGS, status_code=200, opt=needs(MANAGE))
async def create_batch(data: BatchCreate, principal: Principal, batches: BatchService, files: FileStore,
                       via: Via, batch_routes: Routes, audit: AuditTrail) -> dict[str, Any]:
    """Queue a job over an uploaded ``batch`` file whose every line names ``endpoint``; at a batch endpoint,
    on its default deployment."""
    owner = _owner(principal, via)
    deployment = await batch_routes.batch_deployment(principal, via.endpoint) if via.endpoint else None
    found = files.get(owner, data.input_file_id)
    if found.purpose != "batch":
        raise InvalidRequest(f"file {found.id} has purpose {found.purpose!r}; a batch reads a file of purpose "
                             "'batch'", param="input_file_id")
    summary = validate_batch_file(files.data(owner, found.id))
    urls = summary.urls
    if urls != {data.endpoint}:
        raise InvalidRequest(f"the file's lines name {', '.join(sorted(urls))}; every line must name the batch's "
                             f"endpoint {data.endpoint}", param="endpoint")
    batch = await batches.create(NewBatch(owner, principal.billing_key, found.id, data.endpoint,
                                          data.completion_window, data.metadata, summary.lines, via.endpoint,
                                          deployment))
    await audit.record("batch.create", batch["id"], after={"input_file_id": found.id, "endpoint": data.endpoint,
                                                           "lines": summary.lines, "at_endpoint": via.endpoint})
    return batch


@get(paths("/batches"), summary="List batches", tags=TAGS, opt=needs(READ))
async def list_batches(principal: Principal, batches: BatchService, via: Via,
                       after: Annotated[str | None, QueryParameter(max_length=40)] = None,
                       limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20) -> dict[str, Any]:
    """The caller's batches, newest first; ``after`` is the last id of the previous page."""
    data, more = await batches.page(_owner(principal, via), after, limit, via.endpoint)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@get(paths("/batches/{batch_id:str}"), summary="Retrieve a batch", tags=TAGS, opt=needs(READ))
async def retrieve_batch(batch_id: str, principal: Principal, batches: BatchService, via: Via) -> dict[str, Any]:
    """Its status, request counts and, once finished, its output and error files."""
    return await batches.get(_owner(principal, via), batch_id, via.endpoint)


@post(paths("/batches/{batch_id:str}/cancel"), summary="Cancel a batch", tags=TAGS, status_code=200,
      opt=needs(MANAGE))
async def cancel_batch(batch_id: str, principal: Principal, batches: BatchService, via: Via,
                       audit: AuditTrail) -> dict[str, Any]:
    """Stop within seconds; the lines already answered stay in the output and are the only ones billed."""
    batch = await batches.cancel(_owner(principal, via), batch_id, via.endpoint)
    await audit.record("batch.cancel", batch_id)
    return batch


batch_handlers = [create_batch, list_batches, retrieve_batch, cancel_batch]


def batch_dependencies(service: BatchService, routes: Routes) -> dict[str, Provide]:
    return {"batches": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "batch_routes": Provide(lambda: routes, use_cache=True, sync_to_thread=False)}
