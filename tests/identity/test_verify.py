"""Token verification against a real issuer on 127.0.0.1 (``tests/oidc_issuer.py``), without a gateway: every
refusal is a 401 that says why (and never repeats the token), keys rotate within the refresh bound, and an
unknown-``kid`` flood costs the issuer one fetch per bound."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from identity.jwks import JwksCache, public_keys
from identity.service import check_issuer
from identity.tokens import IssuerConfig, TokenVerifier, claim, looks_like_token, refused
from meterway.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from tests.oidc_issuer import OidcIssuer, hmac_signed, tampered, unsigned

if TYPE_CHECKING:
    from collections.abc import Iterator

AUDIENCE = "meterway-acme"


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    server = OidcIssuer(path="/realms/acme").start()
    yield server
    server.stop()


def verifier(issuer: OidcIssuer, bound_s: float = 10.0, **config: Any) -> TokenVerifier:
    known = IssuerConfig(issuer.url, AUDIENCE, "acme", **config)

    async def find(iss: str) -> IssuerConfig:
        if iss != known.issuer:
            raise refused("its issuer (iss) is not configured for any tenant")
        return known

    return TokenVerifier(find, JwksCache(refresh_bound_s=bound_s))


async def refusal(check: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as refused_:
        await check.verify(token)
    assert refused_.value.status == 401 and token not in refused_.value.message
    assert token.split(".")[1] not in refused_.value.message
    return refused_.value.message


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_valid_token_is_its_subject_with_its_known_roles(issuer: OidcIssuer, alg: str) -> None:
    token = issuer.mint(issuer.claims(AUDIENCE, roles=["developer", "wizard"]), alg)
    identity = await verifier(issuer).verify(token)
    assert (identity.issuer.tenant, identity.subject, identity.roles) == ("acme", "alice@example.com",
                                                                          frozenset({"developer"}))


async def test_every_forged_or_stale_token_is_refused_with_its_reason(issuer: OidcIssuer) -> None:
    check, now, kid = verifier(issuer), int(time.time()), issuer.kid("RS256")
    good = issuer.claims(AUDIENCE, roles=["invoker"])
    cases = {
        "expired": issuer.mint({**good, "iat": now - 900, "nbf": now - 900, "exp": now - 120}),
        "not valid yet": issuer.mint({**good, "nbf": now + 120}),
        "iat is in the future": issuer.mint({**good, "iat": now + 120}),
        "audience": issuer.mint({**good, "aud": "someone-else"}),
        "not configured": issuer.mint({**good, "iss": "https://idp.example/other"}),
        "not among the issuer's keys": issuer.mint(good, header_kid="made-up"),
        "alg 'none'": unsigned(good, kid),
        "alg 'HS256'": hmac_signed(good, issuer.public_pem(kid), kid),
        "signature": tampered(issuer.mint(good), sub="mallory@example.com"),
        "lacks the exp claim": issuer.mint({k: v for k, v in good.items() if k != "exp"}),
        "lacks the nbf claim": issuer.mint({k: v for k, v in good.items() if k != "nbf"}),
        "not a well-formed JWT": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }
    for reason, token in cases.items():
        assert reason in await refusal(check, token), reason
    leeway = issuer.mint({**good, "exp": now - 10})  # within the 30 s clock skew
    assert (await check.verify(leeway)).subject == "alice@example.com"


async def test_the_key_must_be_of_the_tokens_algorithm(issuer: OidcIssuer) -> None:
    """An RS256 token whose header names the issuer's ES256 key: refused before any signature check."""
    token = issuer.mint(issuer.claims(AUDIENCE, roles="owner"), "RS256")
    header, payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    relabelled = base64.urlsafe_b64encode(json.dumps({**fields, "kid": issuer.kid("ES256")}).encode())
    forged = f"{relabelled.rstrip(b'=').decode()}.{payload}.{signature}"
    assert "its signing key is for ES256, not RS256" in await refusal(verifier(issuer), forged)


async def test_an_algorithm_the_issuer_does_not_publish_is_refused() -> None:
    server = OidcIssuer(algorithms=("ES256",)).start()
    try:
        server.add_key("RS256")  # a key in the JWKS, but RS256 is not among the published algorithms
        check = verifier(server)
        message = await refusal(check, server.mint(server.claims(AUDIENCE, roles="owner"), "RS256"))
        assert "does not publish RS256" in message
    finally:
        server.stop()


async def test_a_token_without_a_known_role_is_refused_with_403(issuer: OidcIssuer) -> None:
    check = verifier(issuer, roles_claim="realm_access.roles")
    for roles in (None, [], ["wizard"], "wizard superuser"):
        extra: dict[str, Any] = {} if roles is None else {"realm_access": {"roles": roles}}
        with pytest.raises(PermissionDenied, match=r"no meterway role in its 'realm_access\.roles' claim"):
            await check.verify(issuer.mint(issuer.claims(AUDIENCE, **extra)))
    token = issuer.mint(issuer.claims(AUDIENCE, realm_access={"roles": "invoker, finance"}))
    assert (await check.verify(token)).roles == {"invoker", "finance"}


async def test_the_subject_comes_from_the_configured_claim(issuer: OidcIssuer) -> None:
    check = verifier(issuer, subject_claim="https://meterway.example/pipeline")
    token = issuer.mint(issuer.claims(AUDIENCE, roles="invoker", **{"https://meterway.example/pipeline": "ci-7"}))
    assert (await check.verify(token)).subject == "ci-7"
    missing = issuer.mint(issuer.claims(AUDIENCE, roles="invoker"))
    assert "no subject in its 'https://meterway.example/pipeline' claim" in await refusal(check, missing)


async def test_rotation_is_picked_up_and_unknown_kids_are_fetched_once_per_bound(issuer: OidcIssuer) -> None:
    check = verifier(issuer, bound_s=1.0)
    claims = issuer.claims(AUDIENCE, roles="invoker")
    old = issuer.kid("RS256")
    await check.verify(issuer.mint(claims, kid=old))
    assert issuer.jwks_requests == 1
    flood = [issuer.mint(claims, header_kid=f"forged-{n}") for n in range(50)]
    await asyncio.gather(*(refusal(check, token) for token in flood))
    assert issuer.jwks_requests <= 2  # at most one refresh inside the bound, however many kids
    new = issuer.add_key("RS256")
    issuer.retire(old)
    await asyncio.sleep(1.1)  # past the bound: the new kid makes the cache fetch again
    assert (await check.verify(issuer.mint(claims, kid=new))).subject == "alice@example.com"
    assert "not among the issuer's keys" in await refusal(check, issuer.mint(claims, kid=old))  # retired
    assert issuer.jwks_requests <= 3


def test_only_public_signing_keys_are_kept() -> None:
    rsa = {"kty": "RSA", "kid": "a", "n": "x", "e": "AQAB"}
    keys = public_keys([rsa, {"kty": "oct", "kid": "b", "k": "c2VjcmV0"}, {**rsa, "kid": "c", "d": "private"},
                        {**rsa, "kid": "d", "use": "enc"}, "junk", {**rsa, "kid": 7}])
    assert list(keys) == ["a"]


def test_what_looks_like_a_token() -> None:
    assert looks_like_token("eyJh.eyJz.c2ln") and looks_like_token("eyJh.eyJz.")  # alg none: empty signature
    assert not looks_like_token("mw-0123456789abcdefghijklmnopqrstuvwxyzABCD")
    assert not any(looks_like_token(s) for s in ("mwe-0123456789abcdef", "a.b", "a.b.c.d", "a b.c.d"))
    assert claim({"a": {"b": ["x"]}, "c.d": 1}, "a.b") == ["x"] and claim({"c.d": 1}, "c.d") == 1


@pytest.mark.parametrize(("url", "local", "ok"), [
    ("https://login.example.com/tenant/v2.0", False, True),
    ("http://127.0.0.1:8400/realms/acme", True, True),
    ("http://localhost:8400", True, True),
    ("http://127.0.0.1:8400", False, False),  # plain http and loopback: local mode only
    ("https://127.0.0.1:8400", False, False),
    ("http://login.example.com", True, False),
    ("ftp://login.example.com", True, False),
    ("https://10.0.0.7/idp", True, False),  # the gateway's own network
    ("https://169.254.169.254/latest", True, False),
    ("https://login.example.com/?tenant=1", True, False),
    ("https://user:pw@login.example.com", True, False),
    ("https://login.example.com:99999", True, False),
    ("https://[::1", True, False),
    ("login.example.com", True, False),
    ("https://login.example.com/\x00", True, False),  # no controls (PostgreSQL cannot even store NUL)
    ("https://bücher.example", True, False),  # an IDN is written as xn--, as its tokens' iss is
])
def test_issuer_urls(url: str, local: bool, ok: bool) -> None:
    if ok:
        check_issuer(url, local=local)
    else:
        with pytest.raises(InvalidRequest):
            check_issuer(url, local=local)
