"""Verifying a bearer JWT from a configured OpenID Connect issuer, with PyJWT.

The order of the checks: the header's ``alg`` must be asymmetric (``none`` and HMAC are refused before
anything else, so a token "signed" with the issuer's public key as an HMAC secret never reaches a key); the
unverified ``iss`` picks the issuer among those configured (an unknown one is refused without any network
call); the ``kid`` picks a key of that issuer's JWKS (``jwks``), whose ``alg``, if it names one, must be the
token's, which the issuer must publish; then PyJWT checks the signature and ``iss``, ``aud``, ``exp``,
``nbf``, ``iat`` (all required) within ``LEEWAY_S``. Every refusal is a 401 that says why and never repeats
the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from identity.jwks import ASYMMETRIC
from meterway.errors import AuthenticationFailed, PermissionDenied
from meterway.roles import TENANT_ROLES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from identity.jwks import JwksCache, KeySet

LEEWAY_S = 30
MAX_TOKEN_CHARS = 16 * 1024
MAX_SUBJECT_CHARS = 256  # the ledger's column
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat"]
# Three base64url segments; the third is empty in an unsigned (``alg: none``) token, refused below.
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# PyJWT's refusals, most specific first, and what the caller is told.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired (exp)"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat is in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this audience (aud)"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) does not match"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidTokenError, "the token could not be verified"),
)


@dataclass(frozen=True)
class IssuerConfig:
    """An issuer whose tokens are accepted: for one tenant, or (``tenant`` None) the platform's admins."""

    issuer: str
    audience: str
    tenant: str | None = None
    subject_claim: str = "sub"
    roles_claim: str = "roles"


@dataclass(frozen=True)
class TokenIdentity:
    """A verified token: whose issuer, which subject, and the roles it carries (names meterway knows)."""

    issuer: IssuerConfig
    subject: str
    roles: frozenset[str]


def looks_like_token(secret: str) -> bool:
    """Whether a bearer secret is a JWT (three base64url segments) rather than an API key."""
    return _JWT.fullmatch(secret) is not None


def refused(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"Invalid bearer token: {reason}.")


class TokenVerifier:
    """Tokens to identities; ``find`` maps an ``iss`` to its configuration (``AuthenticationFailed`` if none)."""

    def __init__(self, find: Callable[[str], Awaitable[IssuerConfig]], jwks: JwksCache, *,
                 leeway_s: float = LEEWAY_S) -> None:
        self._find, self._jwks, self._leeway_s = find, jwks, leeway_s

    async def verify(self, token: str) -> TokenIdentity:
        """The identity of a valid token, or ``AuthenticationFailed`` (401) saying why it is not one."""
        if len(token) > MAX_TOKEN_CHARS:
            raise refused("it is too long")
        header, unverified = _peek(token)
        algorithm = _algorithm(header)
        issuer = await self._find(_claimed_issuer(unverified))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise refused("its kid is not a string")
        key = _signing_key(await self._jwks.key_set(issuer.issuer, kid), kid, algorithm)
        claims = self._claims(token, key, algorithm, issuer)
        return TokenIdentity(issuer, _subject(claims, issuer), _roles(claims, issuer))

    def _claims(self, token: str, key: Any, algorithm: str, issuer: IssuerConfig) -> dict[str, Any]:
        try:
            return jwt.decode(token, key, algorithms=[algorithm], audience=issuer.audience, issuer=issuer.issuer,
                              leeway=self._leeway_s, options={"require": REQUIRED_CLAIMS})
        except jwt.MissingRequiredClaimError as exc:
            raise refused(f"it lacks the {exc.claim} claim") from None
        except jwt.InvalidTokenError as exc:
            raise refused(next(reason for kind, reason in _REFUSALS if isinstance(exc, kind))) from None


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the claims, not verified yet: they only choose the issuer and the key."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise refused("it is not a well-formed JWT") from None
    return header, claims


def _algorithm(header: dict[str, Any]) -> str:
    algorithm = header.get("alg")
    if algorithm not in ASYMMETRIC:
        shown = algorithm if isinstance(algorithm, str) and re.fullmatch(r"[A-Za-z0-9]{1,16}", algorithm) else "?"
        raise refused(f"alg {shown!r} is not accepted (only the issuer's asymmetric algorithms: RS*, PS*, ES*)")
    return str(algorithm)


def _claimed_issuer(claims: dict[str, Any]) -> str:
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer or len(issuer) > 512:
        raise refused("it lacks the iss claim")
    return issuer


def _signing_key(keys: KeySet, kid: str | None, algorithm: str) -> Any:
    """The public key of the token's ``kid`` (the issuer's only key when the token names none)."""
    if algorithm not in keys.algorithms:
        raise refused(f"the issuer does not publish {algorithm} among its signing algorithms")
    if kid is None and len(keys.keys) != 1:
        raise refused("it names no signing key (kid) and the issuer has several")
    jwk = next(iter(keys.keys.values())) if kid is None else keys.keys.get(kid)
    if jwk is None:
        raise refused("its signing key (kid) is not among the issuer's keys")
    if jwk.get("alg", algorithm) != algorithm:
        raise refused(f"its signing key is for {jwk.get('alg')}, not {algorithm}")
    try:
        return jwt.PyJWK(jwk, algorithm=algorithm).key
    except (jwt.PyJWKError, jwt.InvalidKeyError):
        raise refused(f"its signing key is not a {algorithm} key") from None


def claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (``realm_access.roles``) when no claim has
    that exact name (names with dots, like namespaced URLs, match as they are first)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _subject(claims: dict[str, Any], issuer: IssuerConfig) -> str:
    subject = claim(claims, issuer.subject_claim)
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise refused(f"it has no subject in its {issuer.subject_claim!r} claim (a string of 1-256 characters)")
    return subject


def _roles(claims: dict[str, Any], issuer: IssuerConfig) -> frozenset[str]:
    """The platform issuer's tokens are the admin; a tenant's carry the known roles of their role claim (a
    list, or a string of names separated by spaces or commas), and one without any is refused (403)."""
    if issuer.tenant is None:
        return frozenset({"admin"})
    raw = claim(claims, issuer.roles_claim)
    names = re.split(r"[\s,]+", raw) if isinstance(raw, str) else raw if isinstance(raw, list) else []
    roles = frozenset(name for name in names if isinstance(name, str) and name in TENANT_ROLES)
    if not roles:
        raise PermissionDenied(f"The token carries no meterway role in its {issuer.roles_claim!r} claim (one of "
                               f"{', '.join(TENANT_ROLES)}).")
    return roles
