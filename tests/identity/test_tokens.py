"""OpenID Connect tokens against a real gateway, called with the official openai client: a tenant's token is
billed to that tenant with its subject, forged and stale tokens are all refused (battery row 17) and reach
neither a model nor the ledger, key rotation is picked up within the refresh bound, and the platform
issuer's tokens are the admin — on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from tests.api.ledger import ledger_rows
from tests.identity.conftest import PLATFORM_AUDIENCE
from tests.oidc_issuer import OidcIssuer, hmac_signed, tampered, unsigned

if TYPE_CHECKING:
    from pathlib import Path

    from tests.battery import Figures
    from tests.identity.conftest import TokenTenant
    from tests.oidc_issuer import OidcIssuer as Issuer
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"
MESSAGES = [{"role": "user", "content": "ping"}]
REFRESH_BOUND_S = 10.0  # identity.jwks.REFRESH_BOUND_S


def chat(gateway: ServerProcess, token: str) -> str:
    """One chat call with ``token`` as the API key; the completion's id (its ledger request id)."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)
    return client.chat.completions.create(model=ECHO, messages=MESSAGES, max_tokens=2).id


async def test_a_token_is_billed_to_its_tenant_with_its_subject(tenant: TokenTenant) -> None:
    gateway = tenant.gateway
    # A claim naming another tenant changes nothing: the issuer alone decides whose the token is.
    ids = {chat(gateway, tenant.token(("invoker",), "pipeline-7", tenant="globex")): "pipeline-7",
           chat(gateway, tenant.token(("owner",), "alice@example.com")): "alice@example.com"}
    es256 = tenant.issuer.mint(tenant.issuer.claims(tenant.audience, "bob", roles=["developer"]), "ES256")
    ids[chat(gateway, es256)] = "bob"
    rows = (await ledger_rows(gateway, list(ids)))["by_id"]
    assert {rid: (row["tenant"], row["key_id"], row["subject"]) for rid, row in rows.items()} == {
        rid: (tenant.name, f"token:{tenant.name}", subject) for rid, subject in ids.items()}
    with tenant.client() as owner:
        report = owner.get("/v1/usage", params={"group_by": "subject"}).json()
    assert {line["subject"]: line["requests"] for line in report["data"]} == {
        "pipeline-7": 1, "alice@example.com": 1, "bob": 1}


@pytest.mark.battery(17)
async def test_token_attacks_are_refused_and_reach_no_model_nor_ledger(tenant: TokenTenant,
                                                                       figures: Figures) -> None:
    issuer, gateway, now = tenant.issuer, tenant.gateway, int(time.time())
    good = issuer.claims(tenant.audience, roles=["owner"])
    stranger = OidcIssuer(path="/realms/stranger").start()  # a real issuer no tenant trusts
    try:
        attacks = _attacks(issuer, stranger, good, now)
    finally:
        stranger.stop()
    body = {"model": ECHO, "messages": MESSAGES, "max_tokens": 2}
    for name, token in attacks.items():
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (name, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_api_key" and token.split(".")[1] not in error["message"], name
    control = chat(gateway, issuer.mint(good))  # a valid token after them all: its entry is the only one
    rows = await ledger_rows(gateway, [control])
    mine = [row["request_id"] for row in rows["all"] if row["tenant"] == tenant.name]
    assert mine == [control]
    figures.record(attacks=len(attacks), refused=len(attacks), ledger_entries_from_attacks=len(mine) - 1)


def _attacks(issuer: Issuer, stranger: Issuer, good: dict[str, object], now: int) -> dict[str, str]:
    kid = issuer.kid("RS256")
    return {
        "expired": issuer.mint({**good, "iat": now - 900, "nbf": now - 900, "exp": now - 120}),
        "not yet valid": issuer.mint({**good, "nbf": now + 300}),
        "wrong audience": issuer.mint({**good, "aud": "api://someone-else"}),
        "unknown issuer": stranger.mint({**good, "iss": stranger.url}),
        "issuer claimed, stranger's key": stranger.mint(good),
        "unknown kid": issuer.mint(good, header_kid="kid-nobody-published"),
        "alg none": unsigned(good, kid),
        "HS256 with the public key": hmac_signed(good, issuer.public_pem(kid), kid),
        "tampered payload": tampered(issuer.mint({**good, "roles": ["reader"]}), roles=["owner"], sub="root"),
    }


async def test_rotation_is_picked_up_within_the_refresh_bound(tenant: TokenTenant) -> None:
    issuer, gateway = tenant.issuer, tenant.gateway
    old = issuer.kid("RS256")
    chat(gateway, issuer.mint(issuer.claims(tenant.audience, roles=["invoker"]), kid=old))
    fetched = issuer.jwks_requests
    new = issuer.add_key("RS256")
    issuer.retire(old)
    rotated, accepted = time.monotonic(), None
    while accepted is None and time.monotonic() - rotated < REFRESH_BOUND_S + 5:
        try:
            accepted = chat(gateway, issuer.mint(issuer.claims(tenant.audience, roles=["invoker"]), kid=new))
        except openai.AuthenticationError as refused:
            assert "signing key (kid) is not among the issuer's keys" in refused.message
            time.sleep(0.5)
    assert accepted is not None, "the new key was not picked up within the refresh bound"
    # Half a second between tries for up to the bound: the gateway asked the issuer at most twice.
    assert issuer.jwks_requests - fetched <= 2
    with pytest.raises(openai.AuthenticationError, match="not among the issuer's keys"):
        chat(gateway, issuer.mint(issuer.claims(tenant.audience, roles=["invoker"]), kid=old))  # retired


def test_the_platform_issuers_tokens_are_the_admin(gateway: ServerProcess, platform_issuer: OidcIssuer,
                                                    tenant: TokenTenant) -> None:
    token = platform_issuer.mint(platform_issuer.claims(PLATFORM_AUDIENCE, "ops@meterway.example"))
    admin = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{gateway.url}/v1/tenants", headers=admin).status_code == 200
    created = httpx.post(f"{gateway.url}/v1/keys", headers=admin, json={"tenant": tenant.name, "name": "ci"})
    assert created.status_code == 201, created.text
    seen = httpx.get(f"{gateway.url}/v1/tenants/{tenant.name}/identity", headers=admin)
    assert seen.status_code == 200 and seen.json()["issuer"] == tenant.issuer.url
    as_tenant = {"Authorization": f"Bearer {tenant.token()}"}
    assert httpx.get(f"{gateway.url}/v1/tenants", headers=as_tenant).status_code == 403
    wrong = platform_issuer.mint(platform_issuer.claims("api://not-the-platform"))
    assert httpx.get(f"{gateway.url}/v1/tenants", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


def test_a_token_without_a_known_role_is_refused(tenant: TokenTenant) -> None:
    for roles in ([], ["wizard"], None):
        token = tenant.token(roles) if roles is not None else tenant.issuer.mint(
            tenant.issuer.claims(tenant.audience))
        answer = httpx.get(f"{tenant.gateway.url}/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 403 and "no meterway role" in answer.json()["error"]["message"]


def test_a_deleted_identity_refuses_its_tokens(tenant: TokenTenant) -> None:
    token = tenant.token()
    assert chat(tenant.gateway, token)
    with tenant.gateway.admin() as admin:
        assert admin.delete(f"/v1/tenants/{tenant.name}/identity").status_code == 200
    with pytest.raises(openai.AuthenticationError, match="not configured for any tenant"):
        chat(tenant.gateway, token)


async def test_a_batch_job_created_with_a_token_runs_for_its_tenant(tenant: TokenTenant, tmp_path: Path) -> None:
    """Its lines bill to the tenant under ``token:<tenant>`` (the job keeps no token, so no subject)."""
    ai = openai.OpenAI(base_url=f"{tenant.gateway.url}/v1", api_key=tenant.token(("developer",)), max_retries=0)
    lines = [{"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": ECHO, "max_tokens": 2, "messages": MESSAGES}} for n in range(3)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with path.open("rb") as handle:
        uploaded = ai.files.create(file=handle, purpose="batch")
    batch = ai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 120
    while (batch := ai.batches.retrieve(batch.id)).status != "completed":
        assert batch.status in ("validating", "in_progress", "finalizing") and time.monotonic() < deadline, batch
        time.sleep(0.3)
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    rows = (await ledger_rows(tenant.gateway, [f"{batch.id}-{n}" for n in range(1, 4)]))["by_id"]
    assert {(row["tenant"], row["key_id"], row["batch_id"]) for row in rows.values()} == {
        (tenant.name, f"token:{tenant.name}", batch.id)} and len(rows) == 3
