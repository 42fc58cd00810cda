"""Streamed request bodies with a byte limit, for the routes that take uploads (not JSON)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meterway.errors import PayloadTooLarge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Request


async def limited_body(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused (413) once past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload exceeds the {limit}-byte limit")
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"upload exceeds the {limit}-byte limit")
        yield chunk
