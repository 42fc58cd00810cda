"""What every resource group is built on: the client it calls and the casts from JSON to records.

A group is written once for both clients: its methods return ``client._fetch(...)``, which is the record
for a ``Client`` and an awaitable of it for an ``AsyncClient`` (the annotations name the record).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from meterway.sdk._config import decode
from meterway.sdk._pages import Pages
from meterway.sdk._types import Deleted, Record

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

R = TypeVar("R", bound=Record)


class Resource:
    """One group of routes (``client.keys``, ``client.files``, ...)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _one(self, kind: type[R], method: str, path: str, **options: Any) -> R:
        """One object of ``kind`` from the answer."""
        return self._client._fetch(method, path, lambda r: kind.from_dict(decode(r)), **options)  # type: ignore[no-any-return]

    def _list(self, kind: type[R], path: str, params: dict[str, Any] | None = None) -> list[R]:
        """Every object of an unpaged list answer's ``data``."""
        return self._client._fetch("GET", path, listed(kind), params=params)  # type: ignore[no-any-return]

    def _value(self, method: str, path: str, cast: Callable[[Any], Any], **options: Any) -> Any:
        """``cast`` of the decoded answer."""
        return self._client._fetch(method, path, lambda r: cast(decode(r)), **options)

    def _pages(self, kind: type[R], path: str, **params: Any) -> Pages[R]:
        """A paged list, walked lazily."""
        return Pages(self._client, path, kind.from_dict, params)

    def _deleted(self, method: str, path: str, **options: Any) -> Deleted:
        return self._one(Deleted, method, path, **options)


def listed(kind: type[R]) -> Callable[[httpx.Response], list[R]]:
    """The cast of a list answer: a record per item of ``data``."""
    return lambda response: [kind.from_dict(item) for item in decode(response).get("data", [])]


def body_of(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields given (None: left out, so that the server's default applies)."""
    return {name: value for name, value in fields.items() if value is not None}
