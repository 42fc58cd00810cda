"""Requests that depend on earlier answers (a paged list, a chunked upload) as generators of ``Call``s.

The logic is written once, free of I/O: a generator yields the next ``Call`` and is sent the decoded body
back (or thrown the ``MeterwayError`` it raised). ``Client`` drives it with blocking calls, ``AsyncClient``
with awaited ones (``drive`` / ``adrive``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from meterway.sdk._errors import MeterwayError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One request: what ``Client.request`` takes."""

    method: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)



def drive(steps: Generator[Call, Any, T], send: Callable[..., Any]) -> T:
    """Run ``steps`` with the blocking ``send(method, path, **options)``; its result."""
    call: Call | _Done = next(steps)
    while isinstance(call, Call):
        try:
            body = send(call.method, call.path, **call.options)
        except MeterwayError as exc:
            call = _step(steps.throw, exc)
        else:
            call = _step(steps.send, body)
    return call.value  # type: ignore[no-any-return]


async def adrive(steps: Generator[Call, Any, T], send: Callable[..., Awaitable[Any]]) -> T:
    """``drive`` with an awaited ``send``."""
    call: Call | _Done = next(steps)
    while isinstance(call, Call):
        try:
            body = await send(call.method, call.path, **call.options)
        except MeterwayError as exc:
            call = _step(steps.throw, exc)
        else:
            call = _step(steps.send, body)
    return call.value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Done:
    value: Any


def _step(advance: Callable[[Any], Call], value: Any) -> Call | _Done:
    try:
        return advance(value)
    except StopIteration as done:
        return _Done(done.value)
