"""OpenAI's Files API against a real gateway with the official client: upload, list, retrieve, content and
delete; a batch file is refused at its first bad line, naming it; files past the upload limit are refused;
another tenant's files are absent."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow
LIMIT = 200_000  # METERWAY_MAX_UPLOAD_BYTES of this gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway over a store of its own (files are kept in the store), with a small upload limit."""
    process = ServerProcess(home=tmp_path_factory.mktemp("files-home"), store=tmp_path_factory.mktemp("files-store"),
                            env={"METERWAY_MAX_UPLOAD_BYTES": str(LIMIT)}).start()
    yield process
    process.stop()


def tenant(gateway: ServerProcess) -> openai.OpenAI:
    secret = str(gateway.create_key(f"files-{uuid.uuid4().hex[:8]}")["secret"])
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)


def chat(custom_id: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "meterway-echo", "messages": [{"role": "user", "content": "hi"}], **body}}


def jsonl(*lines: Any) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def upload(ai: openai.OpenAI, data: bytes, purpose: Any = "batch", name: str = "requests.jsonl") -> Any:
    return ai.files.create(file=(name, data), purpose=purpose)


def test_upload_list_retrieve_content_delete(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    batch = jsonl(chat("a"), chat("b", max_tokens=2))
    first = upload(ai, batch)
    weights = upload(ai, b"\x00adapter bytes", purpose="fine-tune", name="adapter.tar")
    last = upload(ai, batch)
    assert (first.object, first.purpose, first.bytes, first.filename) == ("file", "batch", len(batch), "requests.jsonl")
    assert ai.files.retrieve(weights.id) == weights
    listed = ai.files.list()
    assert {f.id for f in listed.data} == {first.id, weights.id, last.id}
    assert [f.id for f in ai.files.list(purpose="fine-tune").data] == [weights.id]

    content = ai.files.content(first.id)
    assert content.content == batch and content.response.headers["content-type"].startswith("application/jsonl")
    tar = ai.files.content(weights.id)
    assert tar.content == b"\x00adapter bytes"
    assert tar.response.headers["content-type"].startswith("application/octet-stream")

    deleted = ai.files.delete(first.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (first.id, "file", True)
    with pytest.raises(openai.NotFoundError) as gone:
        ai.files.retrieve(first.id)
    assert gone.value.body["message"] == f"No such File object: {first.id}"  # type: ignore[index]
    assert {f.id for f in ai.files.list().data} == {weights.id, last.id}


def test_the_list_pages_in_either_order(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    ids = [upload(ai, jsonl(chat("a"))).id for _ in range(3)]
    newest_first = [f.id for f in ai.files.list().data]
    assert sorted(newest_first) == sorted(ids)
    assert [f.id for f in ai.files.list(order="asc").data] == newest_first[::-1]
    page = ai.files.list(limit=2)
    assert ([f.id for f in page.data], page.has_more) == (newest_first[:2], True)
    rest = ai.files.list(limit=2, after=newest_first[1])
    assert ([f.id for f in rest.data], rest.has_more) == (newest_first[2:], False)
    assert [f.id for f in ai.files.list(limit=1)] == newest_first  # the SDK follows `after` page by page


@pytest.mark.parametrize(("lines", "message"), [
    ((chat("a"), "{not json"), "line 2: not valid JSON"),
    ((chat("a"), chat("b"), chat("a")), 'line 3: custom_id "a" is used twice (first on line 1)'),
    (({**chat("a"), "method": "GET"},), "line 1: method must be POST"),
    ((chat("a"), {**chat("b"), "url": "/v1/models"}), "line 2: url must be one of"),
    ((chat("a"), chat("b", foo=1)), "line 2: body: Object contains unknown field `foo`"),
    ((chat("a", model=""),), "line 1: body: model is required"),
    ((chat("a"), "", chat("b", stream=True)), "line 3: body: stream is not available in a batch"),
    (("",), "the file holds no requests"),
])
def test_a_bad_batch_file_is_refused_at_its_first_bad_line(gateway: ServerProcess, lines: tuple[Any, ...],
                                                           message: str) -> None:
    ai = tenant(gateway)
    with pytest.raises(openai.BadRequestError) as refused:
        upload(ai, jsonl(*lines))
    assert refused.value.param == "file" and message in refused.value.message, refused.value.message
    assert ai.files.list().data == []  # nothing refused is kept


def test_an_empty_file_is_refused(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    with pytest.raises(openai.BadRequestError) as refused:
        upload(ai, b"")
    assert refused.value.param == "file" and "no requests" in refused.value.message


def test_only_batch_and_fine_tune_are_accepted_purposes(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    for purpose in ("batch_output", "assistants"):
        with pytest.raises(openai.BadRequestError) as refused:
            upload(ai, jsonl(chat("a")), purpose=purpose)
        assert refused.value.param == "purpose"
    assert ai.files.list().data == []


def test_files_past_the_upload_limit_are_refused(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    assert upload(ai, b"x" * LIMIT, purpose="fine-tune", name="w.bin").bytes == LIMIT
    for size in (LIMIT + 1, 4 * LIMIT):
        with pytest.raises(openai.APIStatusError) as too_big:
            upload(ai, b"x" * size, purpose="fine-tune", name="w.bin")
        assert too_big.value.status_code == 413 and too_big.value.code == "payload_too_large"
    assert len(ai.files.list().data) == 1


def test_another_tenants_file_is_absent(gateway: ServerProcess) -> None:
    owner, other = tenant(gateway), tenant(gateway)
    mine = upload(owner, jsonl(chat("a")))
    attempts = (other.files.retrieve, other.files.content, other.files.delete)
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as missing:
            attempt(mine.id)
        assert missing.value.body["message"] == f"No such File object: {mine.id}"  # type: ignore[index]
    assert other.files.list().data == []
    assert owner.files.retrieve(mine.id) == mine  # the other tenant's delete removed nothing


def test_a_malformed_form_is_a_400_naming_the_field(gateway: ServerProcess) -> None:
    ai = tenant(gateway)
    with httpx.Client(base_url=f"{gateway.url}/v1", headers={"Authorization": f"Bearer {ai.api_key}"}) as http:
        no_file = http.post("/files", data={"purpose": "batch"}, files={"other": ("a.jsonl", b"x")})
        only_purpose = http.post("/files", files={"purpose": (None, "batch")})
        extra = http.post("/files", data={"purpose": "batch", "note": "x"}, files={"file": ("a.jsonl", b"x")})
        json_body = http.post("/files", json={"purpose": "batch"})
    assert (no_file.status_code, no_file.json()["error"]["param"]) == (400, "other")
    assert (only_purpose.status_code, only_purpose.json()["error"]["param"]) == (400, "file")
    assert (extra.status_code, extra.json()["error"]["param"]) == (400, "note")
    assert json_body.status_code == 400
    assert ai.files.list().data == []
