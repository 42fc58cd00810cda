"""The console's state changes (POST, CSRF-checked): each is one REST API call with the user's key.

A refusal by the API comes back to the page as its message; nothing here decides who may do what.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.response import Redirect

from console import views
from console.web import Console, back
from meterway.sdk import APIError

LIMITS = ("rpm", "tpm", "rpd", "max_concurrency")
ENDPOINT_FIELDS = ("kind", "description", "auth_mode", "max_concurrency", "default_deployment")


def key_limits(form: dict[str, str]) -> dict[str, Any]:
    """A key form's limits and budget: blank fields are left out."""
    body: dict[str, Any] = {name: int(form[name]) for name in LIMITS if form.get(name, "").strip().isdigit()}
    if form.get("budget_amount", "").strip():
        body["budget_amount"] = form["budget_amount"].strip()
        body["budget_period"] = form.get("budget_period") or "month"
    return body


async def _call(request: Request[Any, Any, Any], console: Console, to: str, done: str, method: str, path: str,
                **options: Any) -> Redirect:
    session, _form = await console.posted(request)
    try:
        async with console.gateway.for_session(request, session) as client:
            await client.request(method, path, **options)
    except APIError as exc:
        return back(to, error=exc.message)
    return back(to, notice=done)


@post("/keys", status_code=200)
async def create_key(request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """Create a key; its secret is shown in this response only (the page then forgets the form's URL)."""
    session, form = await console.posted(request)
    body = {"tenant": form.get("tenant", "").strip() or session.tenant, "name": form.get("name") or "default",
            "role": form.get("role") or "owner", **key_limits(form)}
    try:
        async with console.gateway.for_session(request, session) as client:
            created = await client.request("POST", "/v1/keys", json=body)
            listed = await client.request("GET", "/v1/keys")
    except APIError as exc:
        return back("/console/keys", error=exc.message)
    return console.render("keys.html", session, created=created, keys=listed["data"], notice="", error="")


@post("/keys/{key_id:str}/rotate", status_code=200)
async def rotate_key(key_id: str, request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """A new secret for the key (the old one works for the rotation grace), shown once."""
    session, _form = await console.posted(request)
    try:
        async with console.gateway.for_session(request, session) as client:
            created = await client.request("POST", f"/v1/keys/{key_id}/rotate")
            listed = await client.request("GET", "/v1/keys")
    except APIError as exc:
        return back("/console/keys", error=exc.message)
    return console.render("keys.html", session, created=created, keys=listed["data"], notice="", error="")


@post("/keys/{key_id:str}/revoke", status_code=303)
async def revoke_key(key_id: str, request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Revoke the key."""
    return await _call(request, console, "/console/keys", "Key revoked.", "DELETE", f"/v1/keys/{key_id}")


@post("/keys/{key_id:str}/limits", status_code=303)
async def edit_key(key_id: str, request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Set the key's limits and budget (the admin may)."""
    session, form = await console.posted(request)
    try:
        async with console.gateway.for_session(request, session) as client:
            await client.request("PATCH", f"/v1/keys/{key_id}", json=key_limits(form))
    except APIError as exc:
        return back("/console/keys", error=exc.message)
    return back("/console/keys", notice="Limits saved.")


@post("/models/{model_id:str}/delete", status_code=303)
async def delete_fine_tune(model_id: str, request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Delete a fine-tuned model."""
    return await _call(request, console, "/console/models", "Fine-tune deleted.", "DELETE",
                       f"/v1/fine_tuned_models/{model_id}")


@post("/batches/{batch_id:str}/cancel", status_code=303)
async def cancel_batch(batch_id: str, request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Cancel a batch job."""
    return await _call(request, console, "/console/batches", "Cancelling.", "POST", f"/v1/batches/{batch_id}/cancel")


@post("/endpoints/{name:str}/traffic", status_code=303)
async def set_traffic(name: str, request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Set an endpoint's traffic and mirror split (the rest of it as it is)."""
    session, form = await console.posted(request)
    try:
        async with console.gateway.for_session(request, session) as client:
            current = await client.request("GET", f"/v1/endpoints/{name}")
            body = {field: current[field] for field in ENDPOINT_FIELDS if current.get(field) is not None}
            body["traffic"] = _split(form, "traffic.")
            body["mirror_traffic"] = _split(form, "mirror.")
            await client.request("PUT", f"/v1/endpoints/{name}", json=body)
    except APIError as exc:
        return back("/console/endpoints", error=exc.message)
    return back("/console/endpoints", notice=f"Traffic of {name} saved.")


@post("/endpoints/{name:str}/keys", status_code=200)
async def endpoint_keys(name: str, request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """The endpoint's two keys, shown in this response only; ``regenerate`` (primary or secondary) first
    replaces that one (the other keeps working)."""
    session, form = await console.posted(request)
    try:
        async with console.gateway.for_session(request, session) as client:
            if form.get("regenerate") in ("primary", "secondary"):
                await client.request("POST", f"/v1/endpoints/{name}/keys/regenerate",
                                     json={"key_type": form["regenerate"]})
            keys = await client.request("POST", f"/v1/endpoints/{name}/keys")
            context = await views.endpoints(client)
    except APIError as exc:
        return back("/console/endpoints", error=exc.message)
    notice = f"The {form['regenerate']} key of {name} was regenerated." if form.get("regenerate") else ""
    return console.render("endpoints.html", session, shown_keys={"endpoint": name, **keys}, notice=notice,
                          error="", **context)


@post("/admin/periods/close", status_code=303)
async def close_period(request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Close a billing period (the admin's); its statements are then shown."""
    session, form = await console.posted(request)
    period = form.get("period", "").strip()
    try:
        async with console.gateway.for_session(request, session) as client:
            closed = await client.request("POST", f"/v1/billing/periods/{period}/close")
    except APIError as exc:
        return back("/console/admin", error=exc.message)
    return back(f"/console/admin?period={period}",
                notice=f"Period {period} closed: {len(closed['data'])} statements.")


def _split(form: dict[str, str], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: int(value) for name, value in form.items()
            if name.startswith(prefix) and value.isdigit() and (prefix == "traffic." or int(value))}


action_handlers = [create_key, rotate_key, revoke_key, edit_key, delete_fine_tune, cancel_batch, set_traffic,
                   endpoint_keys, close_period]
