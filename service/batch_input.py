"""A batch's input file: JSONL, one request per line, checked line by line the way the online routes check them.

Every non-blank line is ``{"custom_id", "method": "POST", "url", "body"}``: ``custom_id`` unique in the file,
``url`` one of the routes a batch can call, and ``body`` a request that route would accept (decoded with its
own request struct, so an unknown field is refused by name), not streamed. A line is held to the online
routes' JSON rules too (no key repeated in an object, nesting at most ``MAX_DEPTH`` deep in its body). The
first bad line refuses the file with its line number and the reason. Reading streams the file: a
50,000-line batch is never in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from meterway.errors import InvalidRequest
from service.http.json_body import JsonProblem, check_json
from service.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MAX_LINES, MAX_CUSTOM_ID = 50_000, 512  # OpenAI's limits
MAX_DEPTH = 64  # the online routes' default (METERWAY_JSON_MAX_DEPTH)
LINE_MAX_DEPTH = MAX_DEPTH + 1  # a line's body, one level in, may nest as deep as an online request
REQUESTS: dict[str, type[msgspec.Struct]] = {"/v1/chat/completions": ChatCompletionRequest,
                                             "/v1/completions": CompletionRequest, "/v1/embeddings": EmbeddingRequest}
KEYS = frozenset({"custom_id", "method", "url", "body"})


@dataclass(frozen=True)
class BatchLine:
    """One request of a batch: its 1-based line number, id, route and body (as the file gave it)."""

    number: int
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchFileSummary:
    """What a valid batch file holds: its number of requests and the routes they call."""

    lines: int
    urls: frozenset[str]


def read_batch_lines(path: Path) -> Iterator[BatchLine]:
    """The file's requests in order; ``InvalidRequest`` (param ``file``) at the first line that is not one."""
    seen: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            if len(seen) >= MAX_LINES:
                raise _bad(number, f"a batch holds at most {MAX_LINES} requests")
            line = _line(number, raw)
            if line.custom_id in seen:
                raise _bad(number, f"custom_id {json.dumps(line.custom_id)} is used twice "
                                   f"(first on line {seen[line.custom_id]})")
            seen[line.custom_id] = number
            yield line


def validate_batch_file(path: Path) -> BatchFileSummary:
    """Check every line; how many requests the file holds and the routes they name."""
    lines, urls = 0, set[str]()
    for line in read_batch_lines(path):
        lines += 1
        urls.add(line.url)
    if not lines:
        raise InvalidRequest("the file holds no requests: a batch file has one JSON request per line", param="file")
    return BatchFileSummary(lines, frozenset(urls))


def _line(number: int, raw: bytes) -> BatchLine:
    item = _parse(number, raw)
    if not isinstance(item, dict) or set(item) != KEYS:
        raise _bad(number, 'a line is an object with exactly "custom_id", "method", "url" and "body"')
    custom_id, method, url, body = item["custom_id"], item["method"], item["url"], item["body"]
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
        raise _bad(number, f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters")
    if method != "POST":
        raise _bad(number, f"method must be POST, not {method!r}")
    if url not in REQUESTS:
        raise _bad(number, f"url must be one of {', '.join(REQUESTS)}, not {url!r}")
    if not isinstance(body, dict):
        raise _bad(number, "body must be a JSON object: the request the url takes")
    _check_body(number, url, body)
    return BatchLine(number, custom_id, url, body)


def _parse(number: int, raw: bytes) -> Any:
    try:
        check_json(raw, LINE_MAX_DEPTH)
        return json.loads(raw, parse_constant=_not_json)
    except JsonProblem as exc:
        raise _bad(number, str(exc).replace("The JSON body", "the line")) from None
    except json.JSONDecodeError as exc:
        raise _bad(number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError:
        raise _bad(number, "not valid JSON: the line is not UTF-8") from None
    except ValueError as exc:
        raise _bad(number, f"not valid JSON: {exc}") from None


def _not_json(constant: str) -> Any:
    """``NaN`` and ``Infinity`` are Python's extension to JSON; the online routes' decoder refuses them."""
    raise ValueError(f"{constant} is not a JSON value")


def _check_body(number: int, url: str, body: dict[str, Any]) -> None:
    try:
        request = msgspec.convert(body, REQUESTS[url])
    except msgspec.ValidationError as exc:
        raise _bad(number, f"body: {exc}") from None
    if not getattr(request, "model", ""):
        raise _bad(number, "body: model is required")
    if getattr(request, "stream", False):
        raise _bad(number, "body: stream is not available in a batch (its answers go to the output file)")


def _bad(number: int, reason: str) -> InvalidRequest:
    return InvalidRequest(f"line {number}: {reason}", param="file")
