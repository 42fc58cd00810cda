"""``Client`` and ``AsyncClient``: one REST API, two kinds of I/O.

Everything but the I/O is shared: the configuration and request building (``_config``), the retry decisions
(``_retries``), the error mapping (``_errors``) and the resource groups, which are written once against
``_BaseClient._fetch`` (a value for ``Client``, an awaitable of it for ``AsyncClient``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager, contextmanager
from itertools import count
from typing import TYPE_CHECKING, Any

import httpx

from meterway.sdk._config import ClientConfig, clean_params, decode, transport_error
from meterway.sdk._errors import error_from_response
from meterway.sdk._resources import ResourceGroups
from meterway.sdk._retries import RetryPolicy
from meterway.sdk._steps import adrive, drive

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Generator, Iterator
    from types import TracebackType

    from meterway.sdk._steps import Call

    Outcome = httpx.Response | httpx.TransportError


class _BaseClient(ResourceGroups):
    """The settings, the retry policy and the resource groups of either client."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, max_retries: int) -> None:
        self._config = ClientConfig.from_args(base_url, api_key, timeout)
        self._retries = RetryPolicy(max_retries)
        ResourceGroups.__init__(self, self)

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing slash."""
        return self._config.base_url

    def _build(self, http: httpx.Client | httpx.AsyncClient, method: str, path: str,
               options: dict[str, Any]) -> httpx.Request:
        options["params"] = clean_params(options.get("params"))
        return http.build_request(method, path, **{k: v for k, v in options.items() if v is not None})

    def _settle(self, attempt: int, method: str, outcome: Outcome) -> float | None:
        """Seconds to wait before trying again, or None when ``outcome`` is a response to keep (a final
        transport failure raises the SDK's connection error)."""
        if isinstance(outcome, httpx.Response):
            return self._retries.after_response(attempt, outcome)
        wait = self._retries.after_failure(attempt, method)
        if wait is None:
            raise transport_error(outcome) from outcome
        return wait

    def _fetch(self, method: str, path: str, cast: Callable[[httpx.Response], Any], **options: Any) -> Any:
        """``cast`` of the response (``Client``), or an awaitable of it (``AsyncClient``)."""
        raise NotImplementedError

    def _run(self, steps: Generator[Call, Any, Any]) -> Any:
        """The result of a sequence of calls (``Client``), or an awaitable of it (``AsyncClient``)."""
        raise NotImplementedError

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``request("GET", path, params=params)``."""
        return self._fetch("GET", path, decode, params=params)

    def post(self, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """``request("POST", path, json=json)``."""
        return self._fetch("POST", path, decode, params=params, json=json)

    def put(self, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """``request("PUT", path, json=json)``."""
        return self._fetch("PUT", path, decode, params=params, json=json)

    def patch(self, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """``request("PATCH", path, json=json)``."""
        return self._fetch("PATCH", path, decode, params=params, json=json)

    def delete(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``request("DELETE", path, params=params)``."""
        return self._fetch("DELETE", path, decode, params=params)


class Client(_BaseClient):
    """The meterway management API, synchronously.

    ``Client(base_url=None, api_key=None)`` reads METERWAY_URL and METERWAY_API_KEY for what is not given;
    ``transport`` swaps the network for any ``httpx`` transport (an in-process app, a mock).
    """

    _sleep = staticmethod(time.sleep)  # the wait between attempts (tests record it instead)

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 60,
                 max_retries: int = 2, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries)
        self._http = httpx.Client(transport=transport, **self._config.http_options())

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                **options: Any) -> Any:
        """Send a request (retried on 429/503) and return its decoded JSON body; an error status raises the
        matching ``APIError``. ``options`` (``files``, ``data``, ``content``, ``headers``) go to httpx."""
        return self._fetch(method, path, decode, params=params, json=json, **options)

    def _fetch(self, method: str, path: str, cast: Callable[[httpx.Response], Any], **options: Any) -> Any:
        return cast(self._send(self._build(self._http, method, path, options)))

    def _run(self, steps: Generator[Call, Any, Any]) -> Any:
        return drive(steps, self.request)

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        for attempt in count():
            try:
                outcome: Outcome = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self._settle(attempt, request.method, outcome)
            if wait is None:
                assert isinstance(outcome, httpx.Response)
                return outcome
            if isinstance(outcome, httpx.Response):
                outcome.close()
            self._sleep(wait)
        raise AssertionError("unreachable")

    @contextmanager
    def stream(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
               **options: Any) -> Iterator[httpx.Response]:
        """The response unread, for a body too large to hold or an event stream; an error status raises."""
        response = self._send(self._build(self._http, method, path, {"params": params, "json": json, **options}),
                              stream=True)
        try:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            yield response
        finally:
            response.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The meterway management API for asyncio: ``Client``'s twin, every call awaited.

    Resource methods return awaitables of what ``Client``'s return; list methods return pages that
    ``async for`` walks.
    """

    _sleep = staticmethod(asyncio.sleep)

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 60,
                 max_retries: int = 2, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout, max_retries)
        self._http = httpx.AsyncClient(transport=transport, **self._config.http_options())

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                      **options: Any) -> Any:
        """``Client.request``, awaited."""
        return await self._fetch(method, path, decode, params=params, json=json, **options)

    async def _fetch(self, method: str, path: str, cast: Callable[[httpx.Response], Any], **options: Any) -> Any:
        return cast(await self._send(self._build(self._http, method, path, options)))

    async def _run(self, steps: Generator[Call, Any, Any]) -> Any:
        return await adrive(steps, self.request)

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        for attempt in count():
            try:
                outcome: Outcome = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                outcome = exc
            wait = self._settle(attempt, request.method, outcome)
            if wait is None:
                assert isinstance(outcome, httpx.Response)
                return outcome
            if isinstance(outcome, httpx.Response):
                await outcome.aclose()
            await self._sleep(wait)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                     **options: Any) -> AsyncIterator[httpx.Response]:
        """``Client.stream``, async: ``async with client.stream("POST", path, json=...) as response``."""
        request = self._build(self._http, method, path, {"params": params, "json": json, **options})
        response = await self._send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()
