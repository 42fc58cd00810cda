"""The objects the resource groups return: frozen dataclasses of the fields the SDK knows, plus ``raw``.

``raw`` is the whole JSON object as the server sent it, so a field added to the server after this SDK was
written is still there (``key.raw["new_field"]``, or ``key["new_field"]``) instead of breaking the decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


@dataclass(frozen=True, kw_only=True)
class Record:
    """A server object: the known fields as attributes, everything in ``raw``."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls: type[R], body: dict[str, Any]) -> R:
        """The record of ``body``; a known field the server left out is None."""
        known = [f.name for f in fields(cls) if f.name != "raw"]
        return cls(raw=dict(body), **{name: body.get(name) for name in known})

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]


@dataclass(frozen=True, kw_only=True)
class ApiKey(Record):
    """An API key; ``secret`` only in the answer that created or rotated it."""

    id: str
    tenant: str
    name: str
    prefix: str
    role: str
    created_at: int
    revoked_at: int | None = None
    expires_at: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    max_concurrency: int | None = None
    budget_amount: str | None = None
    budget_period: str | None = None
    models: list[str] | None = None
    endpoints: list[str] | None = None
    secret: str | None = None


@dataclass(frozen=True, kw_only=True)
class Deleted(Record):
    """The answer to a delete: which object, and that it is gone."""

    id: str | None = None
    object: str | None = None
    deleted: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Tenant(Record):
    """A tenant's limits (capping all its keys) and its Stripe customer."""

    id: str
    created_at: int
    stripe_customer_id: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget_amount: str | None = None
    budget_period: str | None = None


@dataclass(frozen=True, kw_only=True)
class Identity(Record):
    """A tenant's identity provider: the OIDC issuer whose tokens act for it."""

    tenant: str | None = None
    issuer: str
    audience: str
    subject_claim: str | None = None
    roles_claim: str | None = None


@dataclass(frozen=True, kw_only=True)
class Price(Record):
    """A per-token price (decimal strings per million tokens) for a model and tier, from ``effective_from``."""

    model: str
    tier: str
    input_per_million: str
    output_per_million: str
    currency: str
    effective_from: int


@dataclass(frozen=True, kw_only=True)
class InstancePrice(Record):
    """A price per started instance-minute of a dedicated deployment."""

    model: str
    instance_type: str
    per_minute: str
    currency: str
    effective_from: int


@dataclass(frozen=True, kw_only=True)
class UsageReport(Record):
    """Billable usage: one line per group (``data``, dicts keyed by the group names and counts) and the total."""

    start: str | None = None
    end: str | None = None
    group_by: list[str]
    tenant: str | None = None
    data: list[dict[str, Any]]
    total: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class BillingPeriod(Record):
    """A closed billing period (a UTC month); its statements are final."""

    period: str
    closed_at: int


@dataclass(frozen=True, kw_only=True)
class Statement(Record):
    """One tenant's statement of a closed period: exact ``cost`` (a decimal string), ``amount_minor`` rounded
    once, and its per-model ``lines``."""

    period: str
    tenant: str
    currency: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    instance_minutes: int
    cost: str
    amount_minor: int
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FineTunedModel(Record):
    """A fine-tuned model (``ft:<base>:<tenant>:<name>``) with its per-token prices."""

    id: str
    created: int
    owned_by: str
    base: str
    kind: str
    name: str
    sha256: str | None = None
    size_bytes: int | None = None
    status: str | None = None
    input_price_per_million: str | None = None
    output_price_per_million: str | None = None


@dataclass(frozen=True, kw_only=True)
class Deployment(Record):
    """A deployment of an endpoint, with its live ``state``."""

    name: str
    endpoint: str | None = None
    model: str | None = None
    capacity: str | None = None
    state: str | None = None


@dataclass(frozen=True, kw_only=True)
class Endpoint(Record):
    """An online endpoint: its traffic split, its ``scoring_uri`` and its deployments."""

    name: str
    kind: str | None = None
    owner: str | None = None
    description: str | None = None
    auth_mode: str | None = None
    traffic: dict[str, int] | None = None
    mirror_traffic: dict[str, int] | None = None
    max_concurrency: int | None = None
    scoring_uri: str | None = None
    deployments: list[dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True)
class FileObject(Record):
    """A file of the Files API."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str | None = None


@dataclass(frozen=True, kw_only=True)
class Batch(Record):
    """A batch job: its input file, status, request counts and output/error files."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str | None = None
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int | None = None
    request_counts: dict[str, int] | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class AuditEntry(Record):
    """One management action: who (``actor``) did what (``action`` on ``target``) when (``at``)."""

    id: str
    at: int
    tenant: str | None = None
    actor: str | None = None
    action: str
    target: str | None = None
    source: str | None = None
    request_id: str | None = None
    before: Any = None
    after: Any = None
