"""Where a request runs: the built-in serverless endpoint at ``/v1``, or a named endpoint's deployment.

``Routes.route`` turns (caller, requested model, how the endpoint was addressed) into a ``Target``: the model
to run, the endpoint and deployment it is metered under, and the mirror deployment that gets a copy. The
serverless endpoint at ``/v1`` is one built-in deployment over the catalog (and the caller's fine-tunes);
a named endpoint's deployments are chosen by ``endpoints.router`` over a cached snapshot of its weights,
so a weight change holds at every replica within ``FRESH_S``. Every inference call (batch lines too) passes
here, so this is where a key's model and endpoint scope is checked (``service.guard``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from endpoints.keys import is_endpoint_key, key_id_of, matching_type
from endpoints.router import PIN_HEADERS, choose
from meterway.errors import AuthenticationFailed, Conflict, InvalidRequest, ModelNotFound, NotFound
from meterway.roles import INVOKE
from service.auth import Principal
from service.guard import check_endpoint, check_model, may_call, require
from service.inference import Placement
from service.key_throttle import Capacity
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from endpoints.keys import Sign
    from endpoints.service import EndpointService, Snapshot
    from models.catalog import ModelSpec
    from service.resolver import CatalogResolver

FRESH_S, REFRESH_S, ACTIVE_S = 1.0, 0.5, 300.0
# An endpoint key invokes its endpoint (service.guard lets it use its scoring_uri's batches and files too).
ENDPOINT_KEY_ROLES = frozenset({"invoker"})


@dataclass(frozen=True)
class Via:
    """How a request addressed its endpoint: the endpoint in its path (None: ``/v1``), a pinned deployment."""

    endpoint: str | None = None
    pin: str | None = None
    pin_header: str = PIN_HEADERS[0]
    batch: str | None = None  # the batch job whose line this is (its usage says so)


@dataclass(frozen=True)
class Target:
    """The model one request runs on, where it is metered, and its mirrored copy's target (or None)."""

    model: ModelSpec
    placement: Placement
    mirror: Target | None = None
    capacity: Capacity | None = None  # the deployment's own limits (None: only the caller's key's)
    group: str | None = None  # a dedicated deployment's instances in the pool (None: the shared pool)


class Routes:
    """Routing for both kinds of endpoint, and the endpoint keys' authentication."""

    def __init__(self, resolver: CatalogResolver, endpoints: EndpointService, sign: Sign) -> None:
        self._resolver = resolver
        self._sign = sign
        self._snapshots: WarmCache[str, Snapshot] = WarmCache(
            lambda name: self._load(endpoints, name), endpoints.snapshots, fresh_s=FRESH_S, refresh_s=REFRESH_S,
            active_s=ACTIVE_S, name="endpoints")
        endpoints.on_change(self._snapshots.clear)

    def start(self) -> None:
        self._snapshots.start()

    async def close(self) -> None:
        await self._snapshots.close()

    async def route(self, principal: Principal, model: str, via: Via) -> Target:
        """Where ``principal``'s request for ``model`` runs; refused (403) outside the key's role or scope."""
        require(principal, INVOKE, via.endpoint)  # again here: batch lines come from the runner, not a route
        if via.endpoint is None:
            return await self._serverless(principal, model, via)
        snapshot = await self._endpoint(principal, via.endpoint)
        if snapshot.kind == "batch" and via.batch is None:
            raise InvalidRequest(f"endpoint {snapshot.name!r} is a batch endpoint: upload a file of requests and "
                                 "create a job at its scoring_uri (POST .../batches)", param="endpoint")
        served = {d.model for d in snapshot.deployments.values()}
        if model and model not in served and model != snapshot.name:
            raise InvalidRequest(f"endpoint {snapshot.name!r} serves {', '.join(sorted(served)) or 'no model'}; "
                                 "omit `model` (the endpoint decides) or name one of those", param="model")
        choice = choose(snapshot.traffic, snapshot.mirror_traffic, set(snapshot.deployments), pin=via.pin,
                        pin_header=via.pin_header, endpoint=snapshot.name)
        owner = Principal(tenant=snapshot.tenant, key_id=None)
        mirror = None
        if choice.mirror is not None:
            spec = await self._resolver.resolve(snapshot.deployments[choice.mirror].model, owner)
            mirror = Target(spec, Placement(snapshot.name, choice.mirror, billable=False),
                            group=_group(snapshot, choice.mirror))
        chosen = snapshot.deployments[choice.deployment]
        spec = await self._resolver.resolve(chosen.model, owner)
        check_model(principal, spec.id)
        capacity = Capacity.of(snapshot.name, choice.deployment, chosen.rpm, chosen.tpm, chosen.max_concurrency,
                               snapshot.max_concurrency)
        return Target(spec, Placement(snapshot.name, choice.deployment, batch=via.batch), mirror, capacity,
                      _group(snapshot, choice.deployment))

    async def batch_deployment(self, principal: Principal, endpoint: str) -> str:
        """Where a job created at batch endpoint ``endpoint`` runs: its default deployment now."""
        snapshot = await self._endpoint(principal, endpoint)
        if snapshot.kind != "batch":
            raise InvalidRequest(f"endpoint {endpoint!r} is an online endpoint: call it directly; batch jobs are "
                                 "created at a batch endpoint or at /v1/batches", param="endpoint")
        if snapshot.default_deployment is None:
            raise Conflict(f"batch endpoint {endpoint!r} has no deployment yet: add one (it becomes the default)",
                           param="endpoint")
        return snapshot.default_deployment

    async def visible(self, principal: Principal, via: Via) -> list[ModelSpec]:
        """The models a caller may name: the catalog and its fine-tunes, or the endpoint's deployments'."""
        if via.endpoint is None:
            check_endpoint(principal, None)
            return [spec for spec in await self._resolver.visible(principal) if may_call(principal, spec.id)]
        snapshot = await self._endpoint(principal, via.endpoint)
        owner = Principal(tenant=snapshot.tenant, key_id=None)
        models = sorted({d.model for d in snapshot.deployments.values()})
        return [await self._resolver.resolve(model, owner) for model in models if may_call(principal, model)]

    async def resolve(self, principal: Principal, model: str, via: Via) -> ModelSpec:
        """One model a caller may see (``GET .../models/{id}``)."""
        if via.endpoint is None:
            check_endpoint(principal, None)
            if not may_call(principal, model):
                raise ModelNotFound(model)
            return await self._resolver.resolve(model, principal)
        for spec in await self.visible(principal, via):
            if spec.id == model:
                return spec
        raise NotFound(f"endpoint {via.endpoint!r} does not serve the model {model!r}", param="model",
                       code="model_not_found")

    async def authenticate(self, endpoint: str | None, secret: str) -> Principal | None:
        """The principal of an endpoint key (for its own endpoint only), or None if ``secret`` is not one."""
        if not is_endpoint_key(secret):
            return None
        if endpoint is not None:
            try:
                snapshot = await self._snapshots.get(endpoint)
            except NotFound:
                pass
            else:
                key_type = matching_type(self._sign, endpoint, snapshot.nonces, secret)
                if key_type is not None:
                    return Principal(snapshot.tenant, key_id_of(endpoint, key_type), endpoint=endpoint,
                                     roles=ENDPOINT_KEY_ROLES)
        raise AuthenticationFailed("Incorrect API key provided: an endpoint key calls only its own endpoint, at "
                                   "its scoring_uri.")

    async def admit(self, principal: Principal, endpoint: str | None) -> Principal:
        """``principal``, if the endpoint in the request's path (None: ``/v1``) takes its kind of credential
        (its ``auth_mode``); 401 if not. A missing endpoint, or another tenant's, is left to the route (404)."""
        if endpoint is None:
            return principal
        try:
            snapshot = await self._snapshots.get(endpoint)
        except NotFound:
            return principal
        if principal.is_admin or principal.tenant == snapshot.tenant:
            _check_auth_mode(snapshot, by_token=principal.subject is not None)
        return principal

    async def _serverless(self, principal: Principal, model: str, via: Via) -> Target:
        if principal.endpoint is not None:
            raise AuthenticationFailed("Incorrect API key provided: an endpoint key calls only its own endpoint.")
        if via.pin is not None:
            raise InvalidRequest(f"the serverless API at /v1 has no deployments to pin; {via.pin_header} applies "
                                 "to a named endpoint's scoring_uri", param=via.pin_header)
        if not model:
            raise InvalidRequest("you must provide a model parameter", param="model")
        check_endpoint(principal, None)
        check_model(principal, model)
        return Target(await self._resolver.resolve(model, principal), Placement(batch=via.batch))

    async def _endpoint(self, principal: Principal, name: str) -> Snapshot:
        snapshot = await self._snapshots.get(name)
        allowed = principal.is_admin or principal.tenant == snapshot.tenant
        if not allowed or principal.endpoint not in (None, name):
            raise NotFound(f"endpoint {name!r} does not exist", param="endpoint")
        check_endpoint(principal, name)
        return snapshot

    @staticmethod
    async def _load(endpoints: EndpointService, name: str) -> Snapshot:
        found = await endpoints.snapshots([name])
        if name not in found:
            raise NotFound(f"endpoint {name!r} does not exist", param="endpoint")
        return found[name]


def _check_auth_mode(snapshot: Snapshot, *, by_token: bool) -> None:
    """Keys on a ``token`` endpoint, tokens on a ``key`` endpoint: 401 saying what the endpoint takes."""
    if by_token and snapshot.auth_mode == "key":
        raise AuthenticationFailed(f"endpoint {snapshot.name!r} takes API keys only (auth_mode key), not tokens.")
    if not by_token and snapshot.auth_mode == "token":
        raise AuthenticationFailed(f"endpoint {snapshot.name!r} takes OpenID Connect tokens only (auth_mode "
                                   "token), not API keys.")


def _group(snapshot: Snapshot, deployment: str) -> str | None:
    """Where a deployment's requests run: its own instances if it is dedicated, else the shared pool."""
    return f"{snapshot.name}/{deployment}" if snapshot.deployments[deployment].dedicated else None
