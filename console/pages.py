"""The console's pages (GET, server-rendered) and its sign-in and sign-out."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from console import views
from console.session import COOKIE, Session
from console.web import Console
from meterway.sdk import APIError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from meterway.sdk import AsyncClient

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@get("/login", sync_to_thread=False)
def login_page(console: Console, error: str = "") -> Response[str]:
    """The sign-in form."""
    return console.render("login.html", None, error=error)


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """Check the key against the REST API, then set the session cookie."""
    key = str((await request.form()).get("api_key", "")).strip()
    try:
        async with console.gateway.client(request, key) as client:
            await client.request("GET", "/v1/models")
            admin = await views.optional(client, "/v1/tenants") is not None
            usage = await views.optional(client, "/v1/usage", {"group_by": ""})
    except APIError as exc:
        return console.render("login.html", None, status_code=401, error=f"That key was refused: {exc.message}")
    tenant = "" if admin else str((usage or {}).get("tenant") or "")
    return console.sign_in(Session.begin(key, admin, tenant))


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any], console: Console) -> Redirect:
    """Sign out: the cookie is cleared (CSRF-checked, so that another site cannot sign a user out)."""
    await console.posted(request)
    response = Redirect("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@get("/static/{name:str}", sync_to_thread=False)
def static(name: str) -> Response[bytes]:
    """The console's own stylesheet and script."""
    path = STATIC / name
    if path.suffix not in STATIC_TYPES or path.parent != STATIC or not path.is_file():
        return Response(b"not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                    headers={"cache-control": "max-age=300"})


@get("/")
async def overview(request: Request[Any, Any, Any], console: Console) -> Response[str]:
    """Today's and this period's usage, budgets and the models' live state."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        context = await views.overview(client)
    return console.render("overview.html", session, **context)


@get("/usage")
async def usage(request: Request[Any, Any, Any], console: Console, start: str = "", end: str = "",
                by: str = "model", tenant: str = "", bucket: str = "day") -> Response[str]:
    """Charts of tokens and cost per day or hour, and the report's table."""
    session = console.session(request)
    query = views.usage_query(start, end, by, tenant, bucket)
    async with console.gateway.for_session(request, session) as client:
        context = await views.usage(client, query)
    return console.render("usage.html", session, **context)


@get("/usage.csv")
async def usage_csv(request: Request[Any, Any, Any], console: Console, start: str = "", end: str = "",
                    by: str = "model", tenant: str = "", bucket: str = "day") -> Response[str]:
    """The usage page's report as the API's CSV (the same query)."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        text = await client.request("GET", "/v1/usage", params={**views.usage_query(start, end, by, tenant, bucket),
                                                                "format": "csv"})
    return Response(str(text), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="usage.csv"'})


@get("/keys")
async def keys(request: Request[Any, Any, Any], console: Console, notice: str = "",
               error: str = "") -> Response[str]:
    """The keys the user may see, with forms to create, rotate, revoke and edit them."""
    return await _page(request, console, "keys.html", partial(views.lists, keys="/v1/keys"), notice, error)


@get("/models")
async def models(request: Request[Any, Any, Any], console: Console, notice: str = "",
                 error: str = "") -> Response[str]:
    """The catalog with prices and state, the user's fine-tunes and the adapter upload."""
    return await _page(request, console, "models.html", partial(views.lists, models="/v1/models",
                       fine_tunes="/v1/fine_tuned_models"), notice, error)


@get("/endpoints")
async def endpoints(request: Request[Any, Any, Any], console: Console, notice: str = "",
                    error: str = "") -> Response[str]:
    """Endpoints, their deployments and traffic split, and each deployment's requests this period."""
    return await _page(request, console, "endpoints.html", views.endpoints, notice, error)


@get("/batches")
async def batches(request: Request[Any, Any, Any], console: Console, notice: str = "",
                  error: str = "") -> Response[str]:
    """Batch jobs with their progress."""
    return await _page(request, console, "batches.html", partial(views.lists, batches="/v1/batches"), notice, error)


@get("/playground")
async def playground(request: Request[Any, Any, Any], console: Console) -> Response[str]:
    """A chat with any model the key may call."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        context = await views.lists(client, models="/v1/models")
    return console.render("playground.html", session, **context)


@get("/admin")
async def admin(request: Request[Any, Any, Any], console: Console, period: str = "", notice: str = "",
                error: str = "") -> Response[str]:
    """Tenants, the price books, this period's usage per tenant, period close and a closed period's statements."""
    return await _page(request, console, "admin.html", partial(views.admin, period=period), notice, error)


@get("/admin/statements.csv")
async def statements_csv(request: Request[Any, Any, Any], console: Console, period: str) -> Response[str]:
    """A closed period's statements as the API's CSV."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        text = await client.request("GET", f"/v1/billing/periods/{period}/statements", params={"format": "csv"})
    return Response(str(text), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="statements-{period}.csv"'})


page_handlers = [login_page, login, logout, static, overview, usage, usage_csv, keys, models, endpoints,
                 batches, playground, admin, statements_csv]


async def _page(request: Request[Any, Any, Any], console: Console, template: str,
                gather: Callable[[AsyncClient], Awaitable[dict[str, Any]]], notice: str, error: str) -> Response[str]:
    """A page from what ``gather`` reads through the REST API with the signed-in user's key."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        context = await gather(client)
    return console.render(template, session, notice=notice, error=error, **context)
