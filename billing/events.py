"""The usage event: what the request path reports for every served request.

It carries what the engine really counted, never what the request claimed. The ledger prices it with the
price book entry in force at ``started_at``.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One served request, or one started minute of a dedicated instance (a capacity event).

``request_id`` is unique: it is the ledger's idempotency key. A capacity event has ``instance_minutes > 0``,
no tokens and ``endpoint`` "instances"; the ledger prices it per instance-minute of ``(model, instance_type)``.
"""

    request_id: str
    tenant: str
    key_id: str
    model: str
    endpoint: str  # the route: "chat.completions", "completions", "embeddings", "batch"; "instances" (capacity)
    prompt_tokens: int
    completion_tokens: int
    started_at: datetime
    finished_at: datetime
    status: str = "completed"  # "completed", "abandoned" (client left mid-stream), "failed" (partial output)
    base_model: str | None = None  # for fine-tunes: the catalog model underneath
    billable: bool = True  # False for mirrored traffic: recorded, not charged to the customer
    user: str | None = None  # the caller's end user (OpenAI's ``user`` field), for reports grouped by it
    endpoint_name: str = "serverless"  # the endpoint that served it ("serverless": the built-in one at /v1)
    deployment: str = "default"  # its deployment ("default": the serverless endpoint's one deployment)
    instance_minutes: int = 0  # > 0: a capacity event, billed per started instance-minute
    instance_type: str | None = None  # the instance type a capacity event's minutes ran on
    batch_id: str | None = None  # the batch job whose line this request answered
    subject: str | None = None  # a token caller's subject (who in the tenant); None for keys
