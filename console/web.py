"""What every console handler shares: the ``Console`` (cookie seal, API gateway, templates), rendering, and
the two checks of a request (signed in; a state change carries the session's CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Response
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect

from console.gateway import Gateway
from console.session import COOKIE, SessionSeal, console_secret

if TYPE_CHECKING:
    from litestar import Request

    from console.session import Session
    from meterway.settings import Settings

CSRF_HEADER = "x-csrf-token"
NAV = (("/console", "Overview"), ("/console/usage", "Usage"), ("/console/keys", "Keys"),
       ("/console/models", "Models"), ("/console/endpoints", "Endpoints"), ("/console/batches", "Batches"),
       ("/console/playground", "Playground"))


class SignedOut(Exception):
    """No valid session cookie: the browser goes to the sign-in page."""


@dataclass(frozen=True)
class Console:
    """The console's parts, built once by ``console_handlers(settings)``."""

    seal: SessionSeal
    gateway: Gateway
    templates: Environment
    secure_cookie: bool
    currency: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Console:
        templates = Environment(loader=PackageLoader("console", "templates"), autoescape=select_autoescape(),
                                enable_async=False)
        return cls(SessionSeal(console_secret(settings), settings.console.session_ttl_s),
                   Gateway(settings.console.api_url), templates, secure_cookie=not settings.is_local,
                   currency=settings.billing.currency)

    def render(self, name: str, session: Session | None, *, status_code: int = 200, **context: Any) -> Response[str]:
        """The page ``name`` with the navigation of ``session`` (admin pages for the admin)."""
        html = self.templates.get_template(name).render(session=session, nav=NAV, **context)
        return Response(html, media_type="text/html; charset=utf-8", status_code=status_code,
                        headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                 "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 "img-src 'self' data:; frame-ancestors 'none'"})

    def session(self, request: Request[Any, Any, Any]) -> Session:
        """The signed-in session, or ``SignedOut``."""
        found = self.seal.open(request.cookies.get(COOKIE))
        if found is None:
            raise SignedOut
        return found

    async def posted(self, request: Request[Any, Any, Any]) -> tuple[Session, dict[str, str]]:
        """The session and form of a state-changing request; 403 without the session's CSRF token."""
        session = self.session(request)
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded",
                                                               "multipart/form-data")):
            form = {k: str(v) for k, v in (await request.form()).items()}
        if not session.csrf_matches(request.headers.get(CSRF_HEADER) or form.get("csrf")):
            raise PermissionDeniedException("missing or wrong CSRF token")
        return session, form

    def checked(self, request: Request[Any, Any, Any]) -> Session:
        """The session of a streamed state change (an upload, a chat): the CSRF token in its header only."""
        session = self.session(request)
        if not session.csrf_matches(request.headers.get(CSRF_HEADER)):
            raise PermissionDeniedException("missing or wrong CSRF token")
        return session

    def sign_in(self, session: Session, to: str = "/console") -> Redirect:
        response = Redirect(to, status_code=303)
        response.set_cookie(COOKIE, self.seal.seal(session), max_age=self.seal.ttl_s, path="/console",
                            httponly=True, samesite="strict", secure=self.secure_cookie)
        return response


def back(to: str, notice: str = "", error: str = "") -> Redirect:
    """After a form: to the page, with what happened in its query."""
    query = "&".join(f"{name}={_quote(value)}" for name, value in (("notice", notice), ("error", error)) if value)
    return Redirect(f"{to}{'&' if '?' in to else '?'}{query}" if query else to, status_code=303)


def _quote(value: str) -> str:
    return quote(value[:300])
