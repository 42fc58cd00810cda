"""The console's way to the REST API: an SDK ``AsyncClient`` per request, holding the signed-in user's key."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from meterway.sdk import AsyncClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Request

    from console.session import Session


class Gateway:
    """Opens API clients at ``api_url`` (empty: the address the browser reached the console at)."""

    def __init__(self, api_url: str, timeout_s: float = 60.0) -> None:
        self._api_url = api_url.rstrip("/")
        self._timeout_s = timeout_s

    def base_url(self, request: Request[Any, Any, Any]) -> str:
        return self._api_url or str(request.base_url).rstrip("/")

    @asynccontextmanager
    async def client(self, request: Request[Any, Any, Any], key: str) -> AsyncIterator[AsyncClient]:
        """A client acting as ``key``; no retries, so that a refusal shows at once."""
        client = AsyncClient(base_url=self.base_url(request), api_key=key, timeout=self._timeout_s, max_retries=0)
        try:
            yield client
        finally:
            await client.aclose()

    def for_session(self, request: Request[Any, Any, Any], session: Session) -> Any:
        return self.client(request, session.key)
