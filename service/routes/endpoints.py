"""Endpoint and deployment management: ``/v1/endpoints`` (admin or the owning tenant).

Each handler decodes, calls one ``EndpointService`` method and encodes; deployments are shown with their live
state from ``service.capacity``. ``PUT`` creates or updates, so applying the same spec twice leaves one
resource.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, delete, get, post, put
from litestar.di import Provide
from litestar.params import QueryParameter
from msgspec import Meta

from endpoints.rules import MAX_INSTANCES
from endpoints.service import SPEC_FIELDS, Caller, DeploymentSpec, EndpointService, EndpointSpec
from meterway.errors import InvalidRequest, NotFound
from meterway.roles import KEYS, MANAGE, READ
from service.audit_trail import AuditTrail
from service.auth import Principal
from service.capacity import DedicatedCapacity
from service.guard import needs
from service.http.fields import Body, Name

# DNS-label style: the name is part of the endpoint's URL.
Label = Annotated[str, Meta(pattern=r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$", min_length=1, max_length=32,
                            description="lower-case letters, digits and '-', starting with a letter")]
Percent = Annotated[int, Meta(ge=0, le=100)]
Instances = Annotated[int, Meta(ge=1, le=MAX_INSTANCES)]
InstanceType = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", max_length=32)]
TAGS = ["Endpoints"]
LOG_LINES = 500  # what the pool keeps of a deployment's log
# What the audit log keeps of an endpoint before and after a change (a deployment: its SPEC_FIELDS).
ENDPOINT_SETTINGS = ("kind", "description", "auth_mode", "traffic", "mirror_traffic", "max_concurrency",
                     "default_deployment")


class EndpointPut(Body):
    """``PUT /v1/endpoints/{name}``: the endpoint as it should be."""

    # online: traffic split between deployments; batch: jobs (POST {scoring_uri}/batches) on default_deployment
    kind: Literal["online", "batch"] = "online"
    description: Annotated[str, Meta(max_length=256)] = ""
    # What its scoring_uri takes: "key" API keys (the owner's, its endpoint keys, the admin's), "token" OpenID
    # Connect tokens only (the owner tenant's issuer, or the platform's), "key_or_token" either.
    auth_mode: Literal["key", "token", "key_or_token"] = "key"
    traffic: dict[Label, Percent] = {}
    mirror_traffic: dict[Label, Percent] = {}
    tenant: Name | None = None  # the admin names the owner
    max_concurrency: Annotated[int, Meta(ge=1)] | None = None  # requests in flight over all its deployments
    default_deployment: Label | None = None  # kind batch (its first deployment until set); omitted: kept


class DeploymentPut(Body):
    """``PUT /v1/endpoints/{name}/deployments/{deployment}``: which model, on what capacity."""

    model: Annotated[str, Meta(min_length=1, max_length=255)]
    description: Annotated[str, Meta(max_length=256)] = ""
    # serverless: the shared pool, scale to zero, billed per token; dedicated: instances of its own, billed per
    # instance-minute, a fixed instance_count or autoscaling between min_instances and max_instances.
    capacity: Literal["serverless", "dedicated"] = "serverless"
    instance_type: InstanceType | None = None  # default "cpu" (what the pool offers: "cpu" here)
    instance_count: Instances | None = None
    min_instances: Instances | None = None
    max_instances: Instances | None = None
    target_concurrency: Annotated[int, Meta(ge=1, le=256)] | None = None  # requests per instance (default 2)
    cooldown_s: Annotated[int, Meta(ge=1, le=3600)] | None = None  # low load this long before scaling in (60)
    rpm: Annotated[int, Meta(ge=1)] | None = None  # the deployment's own limits, beside each caller's key's
    tpm: Annotated[int, Meta(ge=1)] | None = None
    max_concurrency: Annotated[int, Meta(ge=1)] | None = None

    def spec(self) -> DeploymentSpec:
        return DeploymentSpec(**{name: getattr(self, name) for name in SPEC_FIELDS})


class Regenerate(Body):
    """``POST /v1/endpoints/{name}/keys/regenerate``: which key to replace."""

    key_type: Literal["primary", "secondary"]


def _caller(principal: Principal) -> Caller:
    return Caller(None if principal.is_admin else principal.tenant)


async def _current(endpoints: EndpointService, caller: Caller, name: str) -> dict[str, Any] | None:
    """The endpoint as it is before a change (None: there is none the caller sees)."""
    try:
        return await endpoints.get(caller, name)
    except NotFound:
        return None


def _settings(body: dict[str, Any] | None, deployment: str | None = None) -> dict[str, Any] | None:
    """The endpoint's settings, or its deployment's, as the audit log keeps them (None: it does not exist)."""
    if body is not None and deployment is not None:
        body = next((d for d in body["deployments"] if d["name"] == deployment), None)
    names = ENDPOINT_SETTINGS if deployment is None else SPEC_FIELDS
    return None if body is None else {field: body[field] for field in names}


def _located(request: Request[Any, Any, Any], body: dict[str, Any], capacity: DedicatedCapacity) -> dict[str, Any]:
    """The endpoint's body with its ``scoring_uri`` (the OpenAI base URL its callers use) and its deployments'
    live state."""
    base = str(request.base_url).rstrip("/")
    return {**body, "scoring_uri": f"{base}/endpoints/{body['name']}/v1",
            "openapi_uri": f"{base}/schema/openapi.json",
            "deployments": [capacity.describe(d) for d in body["deployments"]]}


@put("/v1/endpoints/{name:str}", summary="Create or update an endpoint", tags=TAGS, opt=needs(MANAGE))
async def put_endpoint(name: str, data: EndpointPut, principal: Principal, endpoint_service: EndpointService,
                       request: Request[Any, Any, Any], dedicated_capacity: DedicatedCapacity,
                       audit: AuditTrail) -> dict[str, Any]:
    """Idempotent; traffic sums to 100 (or is empty), mirror traffic to at most 50. A batch endpoint takes no
    traffic: a job created at its ``scoring_uri`` runs on its ``default_deployment``, fixed when the job is
    created."""
    spec = EndpointSpec(data.kind, data.description, data.auth_mode, data.traffic, data.mirror_traffic,
                        data.tenant, data.max_concurrency, data.default_deployment)
    before = await _current(endpoint_service, _caller(principal), name)
    body = await endpoint_service.put(_caller(principal), name, spec)
    await audit.record("endpoint.put", name, before=_settings(before), after=_settings(body), tenant=body["owner"])
    return _located(request, body, dedicated_capacity)


@get("/v1/endpoints", summary="List endpoints", tags=TAGS, opt=needs(READ))
async def list_endpoints(principal: Principal, endpoint_service: EndpointService,
                         request: Request[Any, Any, Any], dedicated_capacity: DedicatedCapacity) -> dict[str, Any]:
    """The caller's endpoints (every tenant's for the admin)."""
    bodies = await endpoint_service.all(_caller(principal))
    return {"object": "list", "data": [_located(request, body, dedicated_capacity) for body in bodies]}


@get("/v1/endpoints/{name:str}", summary="Get an endpoint", tags=TAGS, opt=needs(READ))
async def get_endpoint(name: str, principal: Principal, endpoint_service: EndpointService,
                       request: Request[Any, Any, Any], dedicated_capacity: DedicatedCapacity) -> dict[str, Any]:
    """One endpoint with its deployments; another tenant's is a 404."""
    return _located(request, await endpoint_service.get(_caller(principal), name), dedicated_capacity)


@delete("/v1/endpoints/{name:str}", summary="Delete an endpoint", tags=TAGS, status_code=200, opt=needs(MANAGE))
async def delete_endpoint(name: str, principal: Principal, endpoint_service: EndpointService,
                          audit: AuditTrail) -> dict[str, Any]:
    """Delete the endpoint and its deployments."""
    before = await endpoint_service.get(_caller(principal), name)
    await endpoint_service.delete(_caller(principal), name)
    await audit.record("endpoint.delete", name, before=_settings(before), tenant=before["owner"])
    return {"name": name, "object": "endpoint", "deleted": True}


@put("/v1/endpoints/{name:str}/deployments/{deployment:str}", summary="Create or update a deployment",
     tags=TAGS, opt=needs(MANAGE))
async def put_deployment(name: str, deployment: str, data: DeploymentPut, principal: Principal,
                         endpoint_service: EndpointService, dedicated_capacity: DedicatedCapacity,
                         audit: AuditTrail) -> dict[str, Any]:
    """The model must be one the endpoint's owner may call (a catalog model or its own fine-tune). Dedicated
    capacity needs an instance price for the model and instances that fit the pool's memory (409
    ``insufficient_capacity`` otherwise); its instances start loading at once (state ``creating``)."""
    before = await endpoint_service.get(_caller(principal), name)
    body = await endpoint_service.put_deployment(_caller(principal), name, deployment, data.spec())
    await audit.record("deployment.put", f"{name}/{deployment}", before=_settings(before, deployment),
                       after={field: body[field] for field in SPEC_FIELDS}, tenant=before["owner"])
    return dedicated_capacity.describe(body)


@get("/v1/endpoints/{name:str}/deployments/{deployment:str}", summary="Get a deployment", tags=TAGS,
     opt=needs(READ))
async def get_deployment(name: str, deployment: str, principal: Principal, endpoint_service: EndpointService,
                         dedicated_capacity: DedicatedCapacity) -> dict[str, Any]:
    """Its settings and live state: creating / updating / ready / failed (with ``reason``), its instances and
    recent scaling events."""
    return dedicated_capacity.describe(await endpoint_service.get_deployment(_caller(principal), name, deployment))


@get("/v1/endpoints/{name:str}/deployments/{deployment:str}/logs", summary="Get a deployment's logs", tags=TAGS,
     opt=needs(READ))
async def get_deployment_logs(name: str, deployment: str, principal: Principal, endpoint_service: EndpointService,
                              dedicated_capacity: DedicatedCapacity,
                              lines: Annotated[int, QueryParameter(ge=1, le=LOG_LINES)] = 100) -> dict[str, Any]:
    """The last ``lines`` log lines of a dedicated deployment's workers and of the pool's events about them,
    oldest first (kept when it moves to serverless). A serverless deployment runs on the shared pool, whose
    workers serve every tenant: it has no logs of its own (400)."""
    body = await endpoint_service.get_deployment(_caller(principal), name, deployment)
    kept = dedicated_capacity.logs(name, deployment)
    if body["capacity"] != "dedicated" and not kept:
        raise InvalidRequest("logs are kept for dedicated deployments; a serverless deployment runs on the shared "
                             "pool, whose workers serve every tenant", param="deployment", code="not_dedicated")
    return {"object": "deployment.logs", "endpoint": name, "deployment": deployment, "data": kept[-lines:]}


@delete("/v1/endpoints/{name:str}/deployments/{deployment:str}", summary="Delete a deployment", tags=TAGS,
        status_code=200, opt=needs(MANAGE))
async def delete_deployment(name: str, deployment: str, principal: Principal,
                            endpoint_service: EndpointService, audit: AuditTrail) -> dict[str, Any]:
    """Refused (409) while the deployment takes live or mirrored traffic."""
    before = await endpoint_service.get(_caller(principal), name)
    await endpoint_service.delete_deployment(_caller(principal), name, deployment)
    await audit.record("deployment.delete", f"{name}/{deployment}", before=_settings(before, deployment),
                       tenant=before["owner"])
    return {"name": deployment, "object": "deployment", "deleted": True}


@post("/v1/endpoints/{name:str}/keys", summary="List an endpoint's keys", tags=TAGS, status_code=200,
      opt=needs(KEYS))
async def list_endpoint_keys(name: str, principal: Principal, endpoint_service: EndpointService) -> dict[str, Any]:
    """The endpoint's ``primary_key`` and ``secondary_key``: each calls this endpoint only."""
    return await endpoint_service.keys(_caller(principal), name)


@post("/v1/endpoints/{name:str}/keys/regenerate", summary="Regenerate an endpoint key", tags=TAGS,
      status_code=200, opt=needs(KEYS))
async def regenerate_endpoint_key(name: str, data: Regenerate, principal: Principal,
                                  endpoint_service: EndpointService, audit: AuditTrail) -> dict[str, Any]:
    """Replace one key at once; the other keeps working, so callers rotate without downtime."""
    owner = (await endpoint_service.get(_caller(principal), name))["owner"]
    keys = await endpoint_service.regenerate(_caller(principal), name, data.key_type)
    await audit.record("endpoint_key.regenerate", f"{name}/{data.key_type}", tenant=owner)
    return keys


endpoint_handlers = [put_endpoint, list_endpoints, get_endpoint, delete_endpoint, put_deployment, get_deployment,
                     get_deployment_logs, delete_deployment, list_endpoint_keys, regenerate_endpoint_key]


def endpoint_dependencies(service: EndpointService, capacity: DedicatedCapacity) -> dict[str, Provide]:
    # Not "endpoints": a body field of a dependency's name makes litestar answer its validation errors with 500.
    return {"endpoint_service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "dedicated_capacity": Provide(lambda: capacity, use_cache=True, sync_to_thread=False)}
