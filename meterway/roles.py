"""Roles and what each may do: the vocabulary every layer's authorization speaks (issue 19).

A caller holds one or more roles (a key's, set when it is created; a token's, from its role claim). Each route
names the one permission it needs; a caller may use the route when any of its roles grants that permission.
``owner`` is everything in its tenant; the platform ``admin`` is everything everywhere.
"""

from __future__ import annotations

# Permissions, one per kind of action a route takes.
INVOKE = "invoke"  # inference: chat, completions, embeddings, models
MANAGE = "manage"  # endpoints, deployments, fine-tunes, batches, files
KEYS = "keys"  # the tenant's API keys, endpoint keys and identity settings
BILLING = "billing"  # usage, statements, prices (read)
READ = "read"  # read endpoints, deployments, fine-tunes, batches, files
AUDIT = "audit"  # the audit log
PLATFORM = "platform"  # tenants, prices (write), billing close and export: the admin only

ROLES: dict[str, frozenset[str]] = {
    "owner": frozenset({INVOKE, MANAGE, KEYS, BILLING, READ, AUDIT}),
    "developer": frozenset({INVOKE, MANAGE, READ}),
    "invoker": frozenset({INVOKE}),
    "finance": frozenset({BILLING, READ}),
    "reader": frozenset({READ}),
    "admin": frozenset({INVOKE, MANAGE, KEYS, BILLING, READ, AUDIT, PLATFORM}),
}
TENANT_ROLES = tuple(role for role in ROLES if role != "admin")  # what a key or a tenant's token may hold


def grants(roles: frozenset[str], permission: str) -> bool:
    """Whether any of ``roles`` grants ``permission``."""
    return any(permission in ROLES.get(role, frozenset()) for role in roles)
