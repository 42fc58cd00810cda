"""Identity (issue 19): callers authenticated by OpenID Connect tokens instead of API keys.

A tenant names its issuer (``tables``: issuer URL, audience, which claims carry the subject and the roles);
the platform's own issuer, for admins, comes from settings. A token maps to exactly one tenant by its
issuer, never by a claim the caller chooses. ``jwks`` fetches each issuer's discovery document and signing
keys (cached; refreshed on an unknown ``kid`` at most once per ``REFRESH_BOUND_S``); ``tokens`` checks a
token's signature and claims with PyJWT; ``service`` is the management API of the tenants' issuers.
The HTTP layer (``service/tokens.py``) turns a verified ``TokenIdentity`` into the request's principal.
"""
