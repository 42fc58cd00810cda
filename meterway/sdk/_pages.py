"""Lists the server pages (``after`` / ``limit`` → ``data``, ``has_more``, ``last_id``), walked lazily."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

T = TypeVar("T")


class Pages(Generic[T]):
    """Every item of a paged list, fetched a page at a time: ``for item in pages`` with a ``Client``,
    ``async for item in pages`` with an ``AsyncClient``."""

    def __init__(self, client: Any, path: str, cast: Callable[[dict[str, Any]], T],
                 params: dict[str, Any]) -> None:
        self._client, self._path, self._cast = client, path, cast
        self._params = {k: v for k, v in params.items() if v is not None}

    def __iter__(self) -> Iterator[T]:
        params = dict(self._params)
        while params.get("after", "") is not None:
            body = self._client.request("GET", self._path, params=params)
            if inspect.iscoroutine(body):
                body.close()
                raise TypeError("an AsyncClient's list is walked with `async for`")
            yield from self._items(body, params)

    async def __aiter__(self) -> AsyncIterator[T]:
        params = dict(self._params)
        while params.get("after", "") is not None:
            body = await self._client.request("GET", self._path, params=params)
            for item in self._items(body, params):
                yield item

    def _items(self, body: dict[str, Any], params: dict[str, Any]) -> list[T]:
        """The page's items; ``params["after"]`` becomes the next page's cursor (None after the last)."""
        data = body.get("data", [])
        last = body.get("last_id") or (data[-1].get("id") if data else None)
        params["after"] = last if body.get("has_more") and last else None
        return [self._cast(item) for item in data]
