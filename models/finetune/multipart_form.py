"""Stream a ``multipart/form-data`` upload into a staging area: file parts go to disk as they arrive.

Text fields (``base``, ``name``, ``kind``, prices, ``upload_id``) are small and kept in memory; every file
part is written chunk by chunk, so a large upload never sits whole in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from meterway.errors import InvalidRequest, UploadRejected

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator
    from pathlib import Path

class FileSink(Protocol):
    """Where a form's file parts go: a fine-tune's staging area, an upload's part store."""

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes]) -> Path | None: ...


MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16


def boundary_of(content_type: str) -> str:
    """The multipart boundary of a ``Content-Type`` header, or ``InvalidRequest``."""
    kind, options = parse_options_header(content_type)
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise InvalidRequest("expected multipart/form-data with a boundary")
    return str(options["boundary"])


async def receive_form(body: AsyncIterable[bytes], content_type: str, area: FileSink,
                       file_field: str | None = None) -> dict[str, str]:
    """Parse the form from ``body``: file parts into ``area``, text fields returned.

    With ``file_field``, a file under another field name is a 400 naming it (the form has one file field).
    """
    fields: dict[str, str] = {}
    queue = _Parts(body, boundary_of(content_type))
    async for segment in queue.segments():
        if segment.filename is not None:
            if file_field is not None and segment.name != file_field:
                raise InvalidRequest(f"the form's file goes in the field {file_field!r}, not {segment.name!r}",
                                     param=segment.name)
            await area.write_stream(segment.filename, queue.payload())
        else:
            fields[segment.name or ""] = await _field(segment, queue)
            if len(fields) > MAX_FIELDS:
                raise InvalidRequest("too many form fields")
    return fields


async def _field(segment: MultipartSegment, parts: _Parts) -> str:
    value = b""
    async for chunk in parts.payload():
        value += chunk
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {segment.name!r} is too long")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"form field {segment.name!r} is not UTF-8") from None


class _Parts:
    """Turns the push parser's event stream into (segment, payload chunks) pulled by ``async for``."""

    def __init__(self, body: AsyncIterable[bytes], boundary: str) -> None:
        self._events = self._parse(body, boundary)

    async def _parse(self, body: AsyncIterable[bytes], boundary: str) -> AsyncIterator[object]:
        try:
            with PushMultipartParser(boundary, max_segment_count=MAX_FIELDS + 1024) as parser:
                async for chunk in body:
                    if chunk:
                        for event in parser.parse(chunk):
                            yield event
                for event in parser.parse(b""):
                    yield event
        except MultipartError as exc:
            raise UploadRejected(f"malformed multipart body: {exc}") from None

    async def segments(self) -> AsyncIterator[MultipartSegment]:
        async for event in self._events:
            if isinstance(event, MultipartSegment):
                yield event

    async def payload(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            if event is None:
                return
            assert isinstance(event, bytes | bytearray)
            yield bytes(event)
