"""Authorization in one place: the permission each route declares, checked against the caller's roles, and a
key's model and endpoint scope.

Every route that takes a ``principal`` declares what it needs on its decorator (``opt=needs(INVOKE)``); the
``principal`` dependency (service/app.py) calls ``authorize`` once it knows the caller, so no handler checks
roles itself, and a route that declares nothing is refused (tests/access/test_guard.py walks the app for
it). Scope (a key's ``models`` and ``endpoints``) is checked where inference resolves its model and endpoint,
``service.routing.Routes``, which batch lines pass through too. Which objects a caller sees (its tenant's) is
the services' business, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meterway.errors import InternalFailure, PermissionDenied
from meterway.roles import MEANINGS, PLATFORM, grants

if TYPE_CHECKING:
    from litestar import Request

    from service.auth import Principal

PERMISSION = "permission"  # the key of a route handler's ``opt`` that names the permission it needs
SERVERLESS = "serverless"  # the built-in endpoint at /v1, as a key's endpoint scope names it


def needs(permission: str) -> dict[str, str]:
    """A route handler's ``opt``: the one permission a caller needs for it (``meterway.roles``)."""
    if permission not in MEANINGS:
        raise ValueError(f"unknown permission {permission!r}")
    return {PERMISSION: permission}


def authorize(principal: Principal, request: Request[Any, Any, Any]) -> None:
    """Refuse (403) a caller whose roles do not grant what the request's route declares it needs."""
    permission = request.route_handler.opt.get(PERMISSION)
    if permission is None:
        raise InternalFailure(f"the route {request.url.path} declares no permission; it is refused to everyone")
    require(principal, permission, request.path_params.get("endpoint"))


def require(principal: Principal, permission: str, endpoint: str | None = None) -> None:
    """Refuse (403) ``principal`` unless it holds ``permission``; ``endpoint`` is the scoring_uri's endpoint
    the request addressed (None: a route of ``/v1``).

    An endpoint key (``mwe-…``) may do whatever its own endpoint's scoring_uri offers (inference, models, its
    batches and files) and nothing anywhere else."""
    if principal.is_admin:
        return
    if principal.endpoint is not None:
        if endpoint != principal.endpoint or permission == PLATFORM:
            raise PermissionDenied("An endpoint key calls only its own endpoint, at its scoring_uri.")
        return
    if not grants(principal.roles, permission):
        raise PermissionDenied(_refusal(principal, permission))


def _refusal(principal: Principal, permission: str) -> str:
    held = ", ".join(f"'{role}'" for role in sorted(principal.roles)) or "none"
    who = "token" if principal.subject is not None else "key"
    needed = "the platform admin key" if permission == PLATFORM else f"permission to {MEANINGS[permission]}"
    return f"This route needs {needed}: this {who}'s role ({held}) lacks '{permission}'."


def check_model(principal: Principal, model: str) -> None:
    """Refuse (403, ``param`` model) a key scoped to other models."""
    if principal.models is not None and model not in principal.models:
        allowed = ", ".join(sorted(principal.models)) or "none"
        raise PermissionDenied(f"This key may call only the models {allowed}; not '{model}'.", param="model")


def check_endpoint(principal: Principal, endpoint: str | None) -> None:
    """Refuse (403, ``param`` endpoint) a key scoped to other endpoints (None: ``/v1``, named 'serverless')."""
    name = endpoint or SERVERLESS
    if principal.endpoints is not None and name not in principal.endpoints:
        allowed = ", ".join(sorted(principal.endpoints)) or "none"
        raise PermissionDenied(f"This key may call only the endpoints {allowed}; not '{name}'.", param="endpoint")


def may_call(principal: Principal, model: str) -> bool:
    """Whether ``principal``'s model scope lets it name ``model`` (model listings show only those)."""
    return principal.models is None or model in principal.models
