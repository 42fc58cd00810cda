"""OpenAI's Batch API with the official client against a real gateway: upload, create, poll, results, cancel;
a line that fails lands in the error file while the rest succeed; another tenant sees nothing; a gateway
killed mid-job resumes with every line answered exactly once and billed once; budgets hold; a small job takes
its turn beside a big one; the ``meterway batch`` CLI — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.cli import main
from tests.battery import scaled
from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.battery import Figures

pytestmark = pytest.mark.slow
ECHO, SMOLLM = "meterway-echo", "smollm2-135m-instruct"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"METERWAY_DATABASE_URL": request.getfixturevalue("module_pg_url")} if request.param == "postgresql" else {}
    process = ServerProcess(home=tmp_path_factory.mktemp("batches"), store=store_dir, env=env).start()
    yield process
    process.stop()


def client(gateway: ServerProcess, tenant: str) -> tuple[openai.OpenAI, str]:
    secret = str(gateway.create_key(tenant)["secret"])
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0), secret


def chat_line(custom_id: str, model: str = ECHO, max_tokens: int = 3, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": max_tokens,
                     "messages": [{"role": "user", "content": f"line {custom_id}"}], **body}}


def submit(ai: openai.OpenAI, tmp_path: Path, lines: list[dict[str, Any]]) -> openai.types.Batch:
    path = tmp_path / f"in-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with path.open("rb") as handle:
        uploaded = ai.files.create(file=handle, purpose="batch")
    return ai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                             metadata={"job": "test"})


def wait(ai: openai.OpenAI, batch_id: str, statuses: tuple[str, ...], timeout: float = 240) -> openai.types.Batch:
    deadline = time.monotonic() + timeout
    while (batch := ai.batches.retrieve(batch_id)).status not in statuses:
        assert time.monotonic() < deadline, f"{batch_id} stayed {batch.status}"
        time.sleep(0.3)
    return batch


def answered(ai: openai.OpenAI, batch_id: str, at_least: int, timeout: float = 240) -> int:
    """Wait until the job has answered ``at_least`` lines; how many it had then."""
    deadline = time.monotonic() + timeout
    while (counts := ai.batches.retrieve(batch_id).request_counts) is None or counts.completed < at_least:
        assert time.monotonic() < deadline, f"{batch_id} never answered {at_least} lines"
        time.sleep(0.2)
    return counts.completed


def results(ai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ai.files.content(file_id).text.splitlines()] if file_id else []


def billed_requests(gateway: ServerProcess, secret: str, expected: int) -> int:
    """Chat requests in the caller's usage report, once the ledger has ``expected`` of them (or times out)."""
    deadline, found = time.monotonic() + 60, -1
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        while found != expected and time.monotonic() < deadline:
            found = int(http.get("/v1/usage", params={"group_by": ""}).json()["total"]["requests"])
            time.sleep(0.3)
    return found


def test_a_batch_runs_every_line_once_and_a_bad_line_lands_in_the_error_file(gateway: ServerProcess,
                                                                               tmp_path: Path) -> None:
    ai, secret = client(gateway, f"acme-{uuid.uuid4().hex[:6]}")
    lines = [chat_line(f"req-{n}") for n in range(6)] + [chat_line("bad", model="no-such-model")]
    batch = submit(ai, tmp_path, lines)
    assert (batch.status, batch.endpoint, batch.metadata) == ("validating", "/v1/chat/completions", {"job": "test"})
    done = wait(ai, batch.id, ("completed", "failed"))
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (7, 6, 1)

    output = results(ai, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == [f"req-{n}" for n in range(6)]
    for line in output:
        response = line["response"]
        assert response["status_code"] == 200 and response["body"]["object"] == "chat.completion"
        assert response["body"]["usage"]["completion_tokens"] == 3 and line["error"] is None
    errors = results(ai, done.error_file_id)
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("bad", 404)]
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    assert billed_requests(gateway, secret, 6) == 6  # the refused line is not billed
    assert_billed_at_the_batch_price(gateway, secret, batch.id, output)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    for series in ('meterway_batch_jobs_total{status="completed"}', 'meterway_batch_lines_total{outcome="ok"}',
                   'meterway_batch_lines_total{outcome="failed"}', 'meterway_batch_tokens_total{kind="completion"}',
                   'meterway_batch_jobs_in_status{status="completed"}', "meterway_batch_lines_queued"):
        assert series in metrics, series

    listed = ai.batches.list(limit=5)
    assert [b.id for b in listed.data][:1] == [batch.id]
    other, _ = client(gateway, f"globex-{uuid.uuid4().hex[:6]}")
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id or "")
    assert batch.id not in [b.id for b in other.batches.list().data]
    with pytest.raises(openai.ConflictError):
        ai.batches.cancel(batch.id)  # a completed batch cannot be cancelled


def assert_billed_at_the_batch_price(gateway: ServerProcess, secret: str, batch_id: str,
                                     output: list[dict[str, Any]]) -> None:
    """The job's cost is its lines' tokens at the model's batch price (the seed: half the online one)."""
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        prices = {p["tier"]: p for p in http.get("/v1/prices", params={"model": ECHO}).json()["data"]}
        report = http.get("/v1/usage", params={"group_by": "batch"}).json()["data"]
    batch, online = prices["batch"], prices["online"]
    assert Decimal(batch["input_per_million"]) * 2 == Decimal(online["input_per_million"])
    prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    completion = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    expected = (prompt * Decimal(batch["input_per_million"])
                + completion * Decimal(batch["output_per_million"])) / 1_000_000
    [row] = [row for row in report if row["batch"] == batch_id]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    assert Decimal(row["cost"]) == expected


def test_what_a_batch_cannot_run_is_refused(gateway: ServerProcess, tmp_path: Path) -> None:
    ai, _ = client(gateway, f"acme-{uuid.uuid4().hex[:6]}")
    path = tmp_path / "lines.jsonl"
    path.write_text(json.dumps(chat_line("a")) + "\n")
    with path.open("rb") as handle:
        uploaded = ai.files.create(file=handle, purpose="batch")
    with pytest.raises(openai.BadRequestError) as wrong:
        ai.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert wrong.value.param == "endpoint"
    with pytest.raises(openai.NotFoundError):
        ai.batches.create(input_file_id="file-000000000000000000000000", endpoint="/v1/chat/completions",
                          completion_window="24h")


def test_cancel_stops_the_job_and_keeps_what_was_answered(gateway: ServerProcess, tmp_path: Path) -> None:
    ai, secret = client(gateway, f"acme-{uuid.uuid4().hex[:6]}")
    total = 160  # several times the lines in flight: most are still queued when the cancel comes
    batch = submit(ai, tmp_path, [chat_line(f"req-{n}", model=SMOLLM, max_tokens=24) for n in range(total)])
    answered(ai, batch.id, 1)
    assert ai.batches.cancel(batch.id).status == "cancelling"
    done = wait(ai, batch.id, ("cancelled",))
    assert done.request_counts is not None and 1 <= done.request_counts.completed < total
    assert_every_line_once(ai, done, total, "batch_cancelled")
    assert billed_requests(gateway, secret, done.request_counts.completed) == done.request_counts.completed


def test_a_job_past_its_window_expires_with_what_was_answered(gateway: ServerProcess, tmp_path: Path) -> None:
    ai, secret = client(gateway, f"acme-{uuid.uuid4().hex[:6]}")
    total = 160
    batch = submit(ai, tmp_path, [chat_line(f"req-{n}", model=SMOLLM, max_tokens=24) for n in range(total)])
    answered(ai, batch.id, 1)
    url = gateway.env.get("METERWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{gateway.home / 'meterway.db'}"
    asyncio.run(end_window(url, batch.id))
    done = wait(ai, batch.id, ("expired",))
    assert done.expired_at is not None and done.request_counts is not None
    assert 1 <= done.request_counts.completed < total
    assert_every_line_once(ai, done, total, "batch_expired")
    assert billed_requests(gateway, secret, done.request_counts.completed) == done.request_counts.completed


async def end_window(url: str, batch_id: str) -> None:
    """24 hours pass for one job: its completion window ends now."""
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE batches SET expires_at = :now WHERE id = :id"),
                                 {"now": int(time.time()) - 1, "id": batch_id})
    await engine.dispose()


def assert_every_line_once(ai: openai.OpenAI, done: openai.types.Batch, total: int, code: str) -> None:
    """The output holds the answered lines; the error file every other line, with ``code``: each line once."""
    assert done.request_counts is not None
    output, errors = results(ai, done.output_file_id), results(ai, done.error_file_id)
    assert len(output) == done.request_counts.completed and len(errors) == done.request_counts.failed
    assert sorted(line["custom_id"] for line in output + errors) == sorted(f"req-{n}" for n in range(total))
    assert {(e["response"], e["error"]["code"]) for e in errors} == {(None, code)}


@pytest.mark.battery(15)
def test_a_gateway_killed_mid_batch_resumes_without_losing_or_repeating_a_line(
        store_dir: Path, tmp_path: Path, figures: Figures) -> None:
    home = tmp_path / "gateway"
    first = ServerProcess(home=home, store=store_dir).start()
    ai, secret = client(first, f"acme-{uuid.uuid4().hex[:6]}")
    total = int(scaled(48, 256))  # more than the lines in flight (1.5 batches), so some wait for the restart
    batch = submit(ai, tmp_path, [chat_line(f"req-{n}", model=SMOLLM, max_tokens=16) for n in range(total)])
    answered_before = answered(ai, batch.id, 3)
    assert first.process is not None
    first.process.kill()  # SIGKILL: no shutdown, the lease is left behind
    first.process.wait()
    # The restart runs as the product does (a worker process started ahead of need), not as test gateways do.
    second = ServerProcess(home=home, store=store_dir, port=first.port, env={"METERWAY_POOL_STANDBY": "1"}).start()
    healthy, at_restart = time.monotonic(), ai.batches.retrieve(batch.id).request_counts
    try:
        generating_s = decoding(second, healthy)  # /health answered -> the engine decodes the job's lines
        answered(ai, batch.id, (at_restart.completed if at_restart else 0) + 1, timeout=120)
        resume_s = time.monotonic() - healthy  # /health answered -> the next line answered
        done = wait(ai, batch.id, ("completed",), timeout=600)
        output = results(ai, done.output_file_id)
        ids = [line["custom_id"] for line in output]
        billed = billed_requests(second, secret, total)
    finally:
        second.stop()
    figures.record(lines=total, answered_before_the_kill=answered_before, answered=len(ids), billed=billed,
                   decoding_after_health_s=round(generating_s, 2),
                   next_line_answered_after_health_s=round(resume_s, 2))
    assert sorted(ids) == sorted(f"req-{n}" for n in range(total)) and len(set(ids)) == total
    assert done.request_counts is not None and (done.request_counts.completed, done.request_counts.failed) == (total, 0)
    assert billed == total


def decoding(gateway: ServerProcess, since: float, timeout: float = 120) -> float:
    """Seconds from ``since`` until the gateway's engine decodes requests (its ``/metrics``, sampled each second)."""
    pattern = re.compile(r'^meterway:num_requests_running\{model_name="[^"]+"\} ([0-9.]+)$', re.MULTILINE)
    while time.monotonic() - since < timeout:
        if any(float(n) > 0 for n in pattern.findall(httpx.get(f"{gateway.url}/metrics", timeout=30).text)):
            return time.monotonic() - since
        time.sleep(0.1)
    raise AssertionError("the restarted gateway never decoded the job's lines")


def test_a_batch_spends_its_keys_budget_and_no_more(gateway: ServerProcess, tmp_path: Path) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    secret = str(gateway.create_key(tenant, budget_amount="0.0001", budget_period="day", rpm=1)["secret"])
    ai = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    batch = submit(ai, tmp_path, [chat_line(f"req-{n}") for n in range(30)])
    done = wait(ai, batch.id, ("completed",))
    counts = done.request_counts
    assert counts is not None and counts.total == 30 and counts.completed + counts.failed == 30
    assert 2 <= counts.completed < 30  # rpm=1 does not hold a batch back; the budget does
    errors = results(ai, done.error_file_id)
    assert {(e["response"]["status_code"], e["response"]["body"]["error"]["code"]) for e in errors} == {
        (402, "insufficient_quota")}
    assert billed_requests(gateway, secret, counts.completed) == counts.completed
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        spent = http.get("/v1/usage", params={"group_by": ""}).json()["total"]["cost"]
    assert Decimal(spent) <= Decimal("0.0001")


def test_a_small_job_does_not_wait_for_a_big_one(gateway: ServerProcess, tmp_path: Path) -> None:
    big_ai, _ = client(gateway, f"big-{uuid.uuid4().hex[:6]}")
    small_ai, _ = client(gateway, f"small-{uuid.uuid4().hex[:6]}")
    big = submit(big_ai, tmp_path, [chat_line(f"req-{n}", model=SMOLLM, max_tokens=24) for n in range(96)])
    answered(big_ai, big.id, 1)
    small = submit(small_ai, tmp_path, [chat_line(f"req-{n}") for n in range(3)])
    done = wait(small_ai, small.id, ("completed",))
    assert done.request_counts is not None and done.request_counts.completed == 3
    assert big_ai.batches.retrieve(big.id).status == "in_progress"  # the small job took its turn in between
    big_ai.batches.cancel(big.id)
    wait(big_ai, big.id, ("cancelled",))


def test_the_cli_submits_waits_and_fetches_results(gateway: ServerProcess, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, secret = client(gateway, f"acme-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("METERWAY_URL", gateway.url)
    monkeypatch.setenv("METERWAY_API_KEY", secret)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(chat_line(f"req-{n}")) + "\n" for n in range(5)))
    main(["batch", "submit", str(requests), "--endpoint", "/v1/chat/completions", "--wait"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed" and shown["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    out = tmp_path / "out.jsonl"
    main(["batch", "results", shown["id"], "-o", str(out)])
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["custom_id"] for a in answers] == [f"req-{n}" for n in range(5)]
    main(["batch", "list"])
    assert shown["id"] in capsys.readouterr().out
    with pytest.raises(SystemExit) as no_errors:
        main(["batch", "results", shown["id"], "-o", str(out), "--errors"])
    assert "has no error_file" in str(no_errors.value.code)


def test_two_replicas_share_one_queue(store_dir: Path, pg_url: str, tmp_path: Path) -> None:
    # A database of their own: the module's gateway on PostgreSQL would take jobs from a shared one too.
    env = {"METERWAY_DATABASE_URL": pg_url, "METERWAY_KEY_PEPPER": uuid.uuid4().hex}  # one platform
    replicas = [ServerProcess(home=tmp_path / name, store=store_dir, env=env).start() for name in ("a", "b")]
    try:
        ai, secret = client(replicas[0], f"acme-{uuid.uuid4().hex[:6]}")
        lines = [[chat_line(f"job{j}-{n}", model=SMOLLM, max_tokens=8) for n in range(12)] for j in range(4)]
        jobs = [submit(ai, tmp_path, job) for job in lines]
        other = openai.OpenAI(base_url=f"{replicas[1].url}/v1", api_key=secret, max_retries=0)
        for job in jobs:
            done = wait(other, job.id, ("completed",))  # either replica's view is the same job
            ids = [line["custom_id"] for line in results(other, done.output_file_id)]
            assert len(ids) == len(set(ids)) == 12  # every line once, whichever replica answered it
        assert billed_requests(replicas[1], secret, 48) == 48
        finished = [jobs_finished(replica) for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    # Each job finalized once; a job takes seconds, so the replica that is free takes the next one.
    assert sum(finished) == 4 and min(finished) >= 1, finished


def jobs_finished(replica: ServerProcess) -> int:
    """The jobs this replica finalized as ``completed``, from its ``/metrics``."""
    text = httpx.get(f"{replica.url}/metrics", timeout=30).text
    found = re.search(r'^meterway_batch_jobs_total\{status="completed"\} ([0-9.]+)$', text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0
