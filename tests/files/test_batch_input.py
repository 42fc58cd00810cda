"""A batch input file is read line by line the way the online routes read a request, and refused at its first
bad line with that line's number and the reason."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from meterway.errors import InvalidRequest
from service import batch_input
from service.batch_input import BatchFileSummary, BatchLine, read_batch_lines, validate_batch_file

if TYPE_CHECKING:
    from pathlib import Path


def chat(custom_id: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}}


def written(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InvalidRequest) as refused:
        validate_batch_file(path)
    assert refused.value.param == "file"
    return str(refused.value)


def test_a_good_file_is_read_in_order_with_its_line_numbers(tmp_path: Path) -> None:
    embed = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}
    path = written(tmp_path, chat("a", max_tokens=3), "", embed)
    assert list(read_batch_lines(path)) == [
        BatchLine(1, "a", "/v1/chat/completions", chat("a", max_tokens=3)["body"]),
        BatchLine(3, "e", "/v1/embeddings", {"model": "m", "input": "x"})]
    assert validate_batch_file(path) == BatchFileSummary(2, frozenset({"/v1/chat/completions", "/v1/embeddings"}))


@pytest.mark.parametrize(("lines", "message"), [
    ((chat("a"), "{not json"), "line 2: not valid JSON"),
    ((chat("a"), chat("b"), chat("a")), 'line 3: custom_id "a" is used twice (first on line 1)'),
    (({**chat("a"), "method": "GET"},), "line 1: method must be POST"),
    (({**chat("a"), "url": "/v1/models"},), "line 1: url must be one of /v1/chat/completions"),
    ((chat("a"), chat("b", foo=1)), "line 2: body: Object contains unknown field `foo`"),
    ((chat("a", model=""),), "line 1: body: model is required"),
    ((chat("a", stream=True),), "line 1: body: stream is not available in a batch"),
    ((chat("a", max_tokens="3"),), "line 1: body: Expected `int | null`, got `str`"),
    (({"custom_id": "a", "url": "/v1/embeddings", "body": {}},), 'exactly "custom_id", "method", "url" and "body"'),
    (({**chat("a"), "extra": 1},), 'exactly "custom_id", "method", "url" and "body"'),
    (({**chat(""), "custom_id": ""},), "line 1: custom_id must be a string of 1 to 512 characters"),
    ((chat("x" * 513),), "line 1: custom_id must be a string of 1 to 512 characters"),
    (({**chat("a"), "body": []},), "line 1: body must be a JSON object"),
    (('{"custom_id": "a", "custom_id": "b", "method": "POST", "url": "/v1/embeddings", "body": {}}',),
     "line 1: the line repeats the key 'custom_id'"),
    (("[" * 100_000,), "line 1: the line is nested more than"),
    ((json.dumps(chat("a", temperature=1)).replace('"temperature": 1', '"temperature": NaN'),),
     "line 1: not valid JSON: NaN is not a JSON value"),
    (("\n", "  \n"), "the file holds no requests"),
])
def test_the_first_bad_line_refuses_the_file(tmp_path: Path, lines: tuple[Any, ...], message: str) -> None:
    assert message in refusal(written(tmp_path, *lines))


def test_bytes_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_bytes(json.dumps(chat("a")).encode() + b"\n\xff\xfe\n")
    assert refusal(path) == "line 2: not valid JSON: the line is not UTF-8"


def test_a_file_holds_at_most_the_line_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_input, "MAX_LINES", 3)
    assert validate_batch_file(written(tmp_path, *(chat(f"n{i}") for i in range(3)))).lines == 3
    assert refusal(written(tmp_path, *(chat(f"n{i}") for i in range(4)))) == "line 4: a batch holds at most 3 requests"


def test_the_reader_stops_at_the_bad_line_after_yielding_the_good_ones(tmp_path: Path) -> None:
    lines = read_batch_lines(written(tmp_path, chat("a"), chat("a")))
    assert next(lines).custom_id == "a"
    with pytest.raises(InvalidRequest, match="line 2"):
        next(lines)
