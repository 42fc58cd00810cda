"""What the endpoint tests share: a tenant's management client, a fresh endpoint, one routed call."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import openai

    from tests.server import ServerProcess

ECHO = "meterway-echo"
MESSAGES = [{"role": "user", "content": "ping"}]


def tenant_client(gateway: ServerProcess, tenant: str) -> httpx.Client:
    secret = gateway.create_key(tenant)["secret"]
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def make_endpoint(manager: httpx.Client, deployments: dict[str, str], **weights: Any) -> dict[str, Any]:
    """A fresh endpoint with ``deployments`` (name -> model) and ``weights`` (traffic, mirror_traffic)."""
    name = f"ep-{uuid.uuid4().hex[:8]}"
    assert manager.put(f"/v1/endpoints/{name}", json={}).status_code == 200
    for deployment, model in deployments.items():
        made = manager.put(f"/v1/endpoints/{name}/deployments/{deployment}", json={"model": model})
        assert made.status_code == 200, made.text
    shown = manager.put(f"/v1/endpoints/{name}", json=weights)
    assert shown.status_code == 200, shown.text
    return dict(shown.json())


def served_by(client: openai.OpenAI, **extra: Any) -> tuple[str, Any]:
    """(the deployment that answered, the completion) for one chat call (``model`` empty unless given)."""
    raw = client.chat.completions.with_raw_response.create(messages=MESSAGES, max_tokens=2,
                                                           **{"model": "", **extra})
    return raw.headers["x-meterway-deployment"], raw.parse()
