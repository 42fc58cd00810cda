"""Roles and what each may do: the vocabulary every layer's authorization speaks (issue 19).

A caller holds one or more roles (a key's, set when it is created; a token's, from its role claim). Each route
names the one permission it needs; a caller may use the route when any of its roles grants that permission.
``owner`` is everything in its tenant; the platform ``admin`` is everything everywhere.
"""

from __future__ import annotations

# Permissions, one per kind of action a route takes.
INVOKE = "invoke"  # inference: chat, completions, embeddings
CATALOG = "catalog"  # the models a caller may name (GET /v1/models): every role
MANAGE = "manage"  # change endpoints, deployments, fine-tunes, batches, files and uploads
KEYS = "keys"  # the tenant's API keys (list, revoke, rotate), endpoint keys and identity settings
BILLING = "billing"  # usage, statements, prices (read)
READ = "read"  # read endpoints, deployments, fine-tunes, batches, files
AUDIT = "audit"  # the audit log
PLATFORM = "platform"  # tenants, key creation and limits, prices (write): the admin only

ROLES: dict[str, frozenset[str]] = {
    "owner": frozenset({INVOKE, CATALOG, MANAGE, KEYS, BILLING, READ, AUDIT}),
    "developer": frozenset({INVOKE, CATALOG, MANAGE, READ}),
    "invoker": frozenset({INVOKE, CATALOG}),
    "finance": frozenset({CATALOG, BILLING, READ}),
    "reader": frozenset({CATALOG, READ}),
    "admin": frozenset({INVOKE, CATALOG, MANAGE, KEYS, BILLING, READ, AUDIT, PLATFORM}),
}
TENANT_ROLES = tuple(role for role in ROLES if role != "admin")  # what a key or a tenant's token may hold

# What each permission lets a caller do, in the words of a refusal.
MEANINGS = {
    INVOKE: "call models", CATALOG: "list models", MANAGE: "change endpoints, deployments, fine-tunes, "
    "batches and files", KEYS: "manage API keys and endpoint keys", BILLING: "read usage and prices",
    READ: "read endpoints, deployments, fine-tunes, batches and files", AUDIT: "read the audit log",
    PLATFORM: "administer the platform (the admin key only)",
}


def grants(roles: frozenset[str], permission: str) -> bool:
    """Whether any of ``roles`` grants ``permission``."""
    return any(permission in ROLES.get(role, frozenset()) for role in roles)
