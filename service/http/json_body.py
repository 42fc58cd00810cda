"""JSON request bodies checked before any route sees them: media type, size, nesting depth, duplicate keys.

msgspec (which decodes the routes' bodies) keeps the last of two equal keys and recurses without a
bound of its own; a body a client can send must instead get a 4xx with OpenAI's error body. The check
parses the body once with the standard library's C scanner, whose ``object_pairs_hook`` sees every
key, and measures the depth of what it built without recursion.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from litestar.types import (
        ASGIApp,
        HTTPRequestEvent,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        Receive,
        ReceiveMessage,
        Scope,
        Send,
    )

_JSON_METHODS = ("POST", "PUT", "PATCH")


class JsonProblem(ValueError):
    """Why a JSON body is refused before decoding."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _value in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise JsonProblem(f"The JSON body repeats the key {repeated!r} in one object; each key may appear once.")
    return result


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_json(body: bytes, max_depth: int) -> None:
    """Raise ``JsonProblem`` for duplicate keys or nesting past ``max_depth``; other faults are the decoder's."""
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise JsonProblem(f"The JSON body is nested more than {max_depth} levels deep.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, JsonProblem):
            raise
        return  # malformed JSON: the route's decoder answers it with the precise position
    if _depth(value) > max_depth:
        raise JsonProblem(f"The JSON body is nested more than {max_depth} levels deep.")


def json_body_middleware(app: ASGIApp, max_depth: int = 64, max_bytes: int = 1 << 20) -> ASGIApp:
    """Refuse, with OpenAI's error body, a JSON route's body of another media type (415), past its size
    limit (413), nested past ``max_depth`` or repeating a key (400); pass every other request as it came."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _JSON_METHODS or not _takes_json(scope):
            await app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if declared and declared != b"application/json" and not declared.endswith(b"+json"):
            await _refuse(send, 415, "unsupported_media_type", "This route takes a JSON body "
                          f"(Content-Type: application/json), not {declared.decode(errors='replace')}.")
            return
        body = await _read(receive, _limit(scope, max_bytes))
        if body is None:
            await _refuse(send, 413, "payload_too_large", "Request body too large.")
            return
        try:
            check_json(body, max_depth)
        except JsonProblem as exc:
            await _refuse(send, 400, "invalid_json", str(exc))
            return
        await app(scope, _replay(body, receive), send)

    return middleware


def _takes_json(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    signature = getattr(handler, "parsed_fn_signature", None)
    return signature is not None and "data" in signature.parameters


def _limit(scope: Scope, default: int) -> int:
    resolve = getattr(scope.get("route_handler"), "resolve_request_max_body_size", None)
    limit = resolve() if resolve is not None else None
    return default if limit is None else int(limit)


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes (a disconnect ends it early)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        whole: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
        return whole

    return replay


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = msgspec.json.encode({"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": code}})
    start: HTTPResponseStartEvent = {
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    done: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(done)
