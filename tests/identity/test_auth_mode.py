"""An endpoint's ``auth_mode`` at its ``scoring_uri``: ``token`` refuses keys (the tenant's, the endpoint's,
the admin's) with 401 saying so, ``key`` refuses tokens likewise, ``key_or_token`` takes both; another
tenant's token is a 404 as ever."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import openai
import pytest

from tests.identity.conftest import PLATFORM_AUDIENCE
from tests.server import ADMIN_KEY

if TYPE_CHECKING:
    from tests.identity.conftest import TokenTenant
    from tests.oidc_issuer import OidcIssuer
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"


def _endpoint(tenant: TokenTenant, auth_mode: str) -> tuple[str, str]:
    """A fresh endpoint of the tenant's with one echo deployment; (its scoring_uri, its primary key)."""
    name = f"ep-{uuid.uuid4().hex[:8]}"
    with tenant.client() as owner:
        assert owner.put(f"/v1/endpoints/{name}", json={"auth_mode": auth_mode}).status_code == 200
        assert owner.put(f"/v1/endpoints/{name}/deployments/blue", json={"model": ECHO}).status_code == 200
        shown = owner.put(f"/v1/endpoints/{name}", json={"auth_mode": auth_mode, "traffic": {"blue": 100}})
        assert shown.status_code == 200 and shown.json()["auth_mode"] == auth_mode, shown.text
        keys = owner.post(f"/v1/endpoints/{name}/keys").json()
    return shown.json()["scoring_uri"], keys["primary_key"]


def _call(scoring_uri: str, credential: str) -> str:
    client = openai.OpenAI(base_url=scoring_uri, api_key=credential, max_retries=0)
    return client.chat.completions.create(model="", messages=[{"role": "user", "content": "ping"}],
                                          max_tokens=2).model


def test_each_auth_mode_takes_what_it_says(tenant: TokenTenant, gateway: ServerProcess,
                                            platform_issuer: OidcIssuer) -> None:
    key = str(gateway.create_key(tenant.name)["secret"])
    token = tenant.token(("invoker",))
    admin_token = platform_issuer.mint(platform_issuer.claims(PLATFORM_AUDIENCE, "ops"))
    tokens_only, endpoint_key = _endpoint(tenant, "token")
    assert _call(tokens_only, token) == ECHO and _call(tokens_only, admin_token) == ECHO
    for credential in (key, endpoint_key, ADMIN_KEY):
        with pytest.raises(openai.AuthenticationError, match="takes OpenID Connect tokens only"):
            _call(tokens_only, credential)
    keys_only, endpoint_key = _endpoint(tenant, "key")
    assert _call(keys_only, key) == ECHO and _call(keys_only, endpoint_key) == ECHO
    for credential in (token, admin_token):
        with pytest.raises(openai.AuthenticationError, match="takes API keys only"):
            _call(keys_only, credential)
    either, endpoint_key = _endpoint(tenant, "key_or_token")
    assert {_call(either, credential) for credential in (key, endpoint_key, token, admin_token)} == {ECHO}


def test_another_tenants_token_does_not_see_the_endpoint(tenant: TokenTenant, gateway: ServerProcess) -> None:
    scoring_uri, _key = _endpoint(tenant, "token")
    outsider = str(gateway.create_key(f"globex-{uuid.uuid4().hex[:6]}")["secret"])
    with pytest.raises(openai.NotFoundError):
        _call(scoring_uri, outsider)  # not a 401 about the auth mode: the endpoint is not the outsider's


def test_an_unknown_auth_mode_is_refused(tenant: TokenTenant) -> None:
    with tenant.client() as owner:
        refused = owner.put(f"/v1/endpoints/ep-{uuid.uuid4().hex[:8]}", json={"auth_mode": "aad_token"})
    assert refused.status_code == 400 and "auth_mode" in refused.text
