"""The guard, without a server: every route that takes a caller names its permission, every management change
is recorded in the audit log, the audit log has no route that changes it, and the role matrix and the scope
checks say what README's table says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from meterway.errors import PermissionDenied
from meterway.roles import AUDIT, BILLING, CATALOG, INVOKE, KEYS, MANAGE, PLATFORM, READ, ROLES, grants
from service.auth import Principal
from service.guard import PERMISSION, check_endpoint, check_model, may_call, needs, require

if TYPE_CHECKING:
    from pathlib import Path

    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler

CALLER = {"principal", "audit"}  # the dependencies that authenticate (and authorize) the caller
# POSTs and PUTs that change nothing worth an entry: bytes of an upload in progress, reading endpoint keys.
NOT_AUDITED = {"/v1/resumable_uploads", "/v1/resumable_uploads/{upload_id:str}", "/v1/uploads",
               "/v1/uploads/{upload_id:str}/parts", "/v1/uploads/{upload_id:str}/cancel",
               "/v1/endpoints/{name:str}/keys"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    from meterway.settings import Settings
    from service.app import create_app

    home: Path = tmp_path_factory.mktemp("guard")
    return create_app(Settings.from_env({}, home=home, store=str(home / "store")))


def _handlers(app: Litestar) -> list[tuple[str, HTTPRouteHandler]]:
    return [(route.path, handler) for route in app.routes for handler in getattr(route, "route_handlers", [])]


def test_every_route_that_takes_a_caller_declares_its_permission(app: Litestar) -> None:
    undeclared = [f"{sorted(h.http_methods)} {path}" for path, h in _handlers(app)
                  if CALLER & set(h.parsed_fn_signature.parameters) and PERMISSION not in h.opt]
    assert undeclared == []
    open_routes = {path for path, h in _handlers(app) if not CALLER & set(h.parsed_fn_signature.parameters)
                   and "OPTIONS" not in h.http_methods}
    # The console's pages take no caller: they call the REST API with the signed-in user's key.
    assert {p for p in open_routes if not p.startswith(("/schema", "/console"))} == {"/health", "/metrics"}


def test_every_management_change_is_audited(app: Litestar) -> None:
    silent = [f"{sorted(h.http_methods)} {path}" for path, h in _handlers(app)
              if h.opt.get(PERMISSION) in (MANAGE, KEYS, PLATFORM) and h.http_methods - {"GET", "OPTIONS"}
              and path not in NOT_AUDITED and "audit" not in h.parsed_fn_signature.parameters]
    assert silent == []


def test_the_audit_log_has_no_route_that_changes_it(app: Litestar) -> None:
    methods = {m for path, h in _handlers(app) if path.startswith("/v1/audit") for m in h.http_methods}
    assert methods == {"GET", "OPTIONS"}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_holds_exactly_its_permissions(role: str) -> None:
    caller = Principal("acme", "key_1", roles=frozenset({role}), is_admin=role == "admin")
    for permission in (INVOKE, CATALOG, MANAGE, KEYS, BILLING, READ, AUDIT, PLATFORM):
        if grants(frozenset({role}), permission):
            require(caller, permission)
        else:
            with pytest.raises(PermissionDenied, match=role):
                require(caller, permission)


def test_the_matrix_of_the_issue() -> None:
    holds = {role: {p for p in (INVOKE, MANAGE, KEYS, BILLING, READ, AUDIT) if grants(frozenset({role}), p)}
             for role in ROLES}
    assert holds["owner"] == {INVOKE, MANAGE, KEYS, BILLING, READ, AUDIT}
    assert holds["developer"] == {INVOKE, MANAGE, READ}
    assert holds["invoker"] == {INVOKE}
    assert holds["finance"] == {BILLING, READ}
    assert holds["reader"] == {READ}
    assert not any(grants(frozenset({role}), PLATFORM) for role in ROLES if role != "admin")
    with pytest.raises(ValueError, match="unknown"):
        needs("everything")


def test_a_key_may_hold_every_tenant_role_and_only_those() -> None:
    from typing import get_args

    from meterway.roles import TENANT_ROLES
    from service.routes.keys import Role

    assert get_args(Role) == TENANT_ROLES and "admin" not in TENANT_ROLES


def test_a_refusal_names_the_role_and_what_it_lacks() -> None:
    with pytest.raises(PermissionDenied) as refused:
        require(Principal("acme", "key_1", roles=frozenset({"finance"})), INVOKE)
    assert "'finance'" in refused.value.message and "'invoke'" in refused.value.message
    with pytest.raises(PermissionDenied, match="platform admin key"):
        require(Principal("acme", "key_1"), PLATFORM)


def test_an_endpoint_key_acts_only_at_its_own_scoring_uri() -> None:
    key = Principal("acme", "ep:support:primary", endpoint="support", roles=frozenset({"invoker"}))
    for permission in (INVOKE, CATALOG, MANAGE, READ):  # its batches and files too
        require(key, permission, "support")
    for permission, endpoint in ((INVOKE, "other"), (INVOKE, None), (READ, None), (PLATFORM, "support")):
        with pytest.raises(PermissionDenied):
            require(key, permission, endpoint)


def test_model_and_endpoint_scope() -> None:
    scoped = Principal("acme", "key_1", models=frozenset({"a"}), endpoints=frozenset({"support"}))
    check_model(scoped, "a")
    check_endpoint(scoped, "support")
    assert may_call(scoped, "a") and not may_call(scoped, "b")
    with pytest.raises(PermissionDenied) as model:
        check_model(scoped, "b")
    with pytest.raises(PermissionDenied) as serverless:
        check_endpoint(scoped, None)  # /v1 is the endpoint 'serverless', which this scope leaves out
    assert (model.value.param, serverless.value.param) == ("model", "endpoint")
    anything = Principal("acme", "key_2")
    check_model(anything, "b")
    check_endpoint(anything, None)
