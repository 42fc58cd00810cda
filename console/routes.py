"""The console's router: every page and action under ``/console``, kept out of the OpenAPI schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect

from console.actions import action_handlers
from console.pages import page_handlers
from console.streams import stream_handlers
from console.web import Console, SignedOut
from meterway.sdk import APIError

if TYPE_CHECKING:
    from meterway.settings import Settings


def console_handlers(settings: Settings) -> Router:
    """The ``/console`` router for the app of ``settings``."""
    console = Console.from_settings(settings)

    def refused(request: Request[Any, Any, Any], exc: APIError) -> Response[str]:
        session = console.seal.open(request.cookies.get("mw_console"))
        if exc.status_code == 401:
            return Redirect("/console/login?error=Your+key+was+refused", status_code=303)  # type: ignore[return-value]
        return console.render("error.html", session, status_code=exc.status_code, message=exc.message)

    def forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[str]:
        return console.render("error.html", None, status_code=403, message=str(exc.detail))

    return Router(
        path="/console", route_handlers=[*page_handlers, *action_handlers, *stream_handlers],
        dependencies={"console": Provide(lambda: console, use_cache=True, sync_to_thread=False)},
        exception_handlers={SignedOut: lambda _r, _e: Redirect("/console/login", status_code=303),
                            APIError: refused, PermissionDeniedException: forbidden},
        include_in_schema=False,
    )
