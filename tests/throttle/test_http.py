"""Limits through the real gateway: two ``meterway serve`` processes sharing Redis and PostgreSQL, the
built-in ``meterway-echo`` model, httpx and the official ``openai`` client over real sockets."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from tests.server import ServerProcess

from .conftest import REDIS_URL, _drop_keys

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from tests.battery import Figures

pytestmark = pytest.mark.slow
ECHO = "meterway-echo"
HELLO = [{"role": "user", "content": "hi"}]
SIX_HEADERS = {f"x-ratelimit-{what}-{dimension}" for what in ("limit", "remaining", "reset")
               for dimension in ("requests", "tokens")}
#: The echo model's prices (models/catalog.toml), USD per token.
INPUT_PRICE, OUTPUT_PRICE = Decimal("1.00") / 10**6, Decimal("2.00") / 10**6


@pytest.fixture(scope="module")
def shared_database(module_pg_url: str) -> str:
    """One PostgreSQL database for both gateways (keys created on one authenticate on the other)."""
    return module_pg_url


@pytest.fixture(scope="module")
def gateway_env(shared_database: str) -> dict[str, str]:
    return {"METERWAY_REDIS_URL": REDIS_URL, "METERWAY_DATABASE_URL": shared_database,
            "METERWAY_KEY_PEPPER": "throttle-tests-pepper"}


@pytest.fixture(scope="module")
def gateways(store_dir: Path, gateway_env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two replicas of the gateway behind no balancer: tests spread requests over both."""
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            home = tmp_path_factory.mktemp(f"replica-{name}")
            started.append(ServerProcess(home=home, store=store_dir, env=gateway_env).start())
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def tenant() -> AsyncIterator[str]:
    """A fresh tenant; its counters are dropped from Redis afterwards."""
    name = f"thr-{uuid.uuid4().hex[:10]}"
    yield name
    await _drop_keys(f"mw:{{{name}}}")


def _secret(gateway: ServerProcess, tenant: str, **limits: object) -> str:
    return str(gateway.create_key(tenant, **limits)["secret"])


async def _chat(http: httpx.AsyncClient, url: str, secret: str, max_tokens: int) -> httpx.Response:
    return await http.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                           json={"model": ECHO, "messages": HELLO, "max_tokens": max_tokens})


async def test_a_429_carries_retry_after_and_the_six_headers(gateways: list[ServerProcess],
                                                              tenant: str) -> None:
    secret = _secret(gateways[0], tenant, rpm=2, tpm=10_000)
    async with httpx.AsyncClient(timeout=30) as http:
        answers = [await _chat(http, gateway.url, secret, 4) for gateway in (*gateways, gateways[0])]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert set(answers[0].headers) >= SIX_HEADERS
    refused = answers[2]
    assert set(refused.headers) >= SIX_HEADERS
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


async def test_the_openai_client_retries_after_waiting(gateways: list[ServerProcess], tenant: str) -> None:
    secret = _secret(gateways[0], tenant, max_concurrency=1)
    eager = openai.AsyncOpenAI(base_url=f"{gateways[0].url}/v1", api_key=secret, max_retries=0)
    patient = openai.AsyncOpenAI(base_url=f"{gateways[1].url}/v1", api_key=secret, max_retries=5)
    # A long echo stream, not read, holds the key's only slot until the client hangs up.
    holder = await eager.chat.completions.create(model=ECHO, messages=HELLO, max_tokens=4000, n=4,
                                                 stream=True)
    with pytest.raises(openai.RateLimitError) as busy:
        await eager.chat.completions.create(model=ECHO, messages=HELLO, max_tokens=2)

    async def hang_up_soon() -> None:
        await asyncio.sleep(0.5)
        await holder.close()

    hanging_up = asyncio.create_task(hang_up_soon())
    raw = await patient.chat.completions.with_raw_response.create(model=ECHO, messages=HELLO, max_tokens=2)
    await hanging_up
    assert busy.value.code == "concurrency_limit_exceeded"
    assert busy.value.response.headers["retry-after"] == "1"
    assert raw.retries_taken >= 1
    answer = raw.parse()
    assert answer.usage is not None and answer.usage.completion_tokens == 2


@pytest.mark.battery(4)
async def test_cancelled_streams_release_their_slots(gateways: list[ServerProcess], tenant: str,
                                                 figures: Figures) -> None:
    secret = _secret(gateways[0], tenant, max_concurrency=2)
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"model": ECHO, "messages": HELLO, "max_tokens": 4000, "stream": True}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        for _round in range(3):
            # Take every slot, read one event from each stream, then hang up.
            async with http.stream("POST", f"{gateways[0].url}/v1/chat/completions", json=body) as first, \
                    http.stream("POST", f"{gateways[1].url}/v1/chat/completions", json=body) as second:
                assert (first.status_code, second.status_code) == (200, 200)
                await anext(first.aiter_lines())
                await anext(second.aiter_lines())
                over = await _chat(http, gateways[0].url, secret, 2)
                assert over.status_code == 429
                assert over.json()["error"]["code"] == "concurrency_limit_exceeded"
            await _until_full_concurrency(http, gateways, secret, slots=2)
    figures.record(gateways=2, rounds=3, streams_abandoned=6, slots=2, slots_released=2)


async def _until_full_concurrency(http: httpx.AsyncClient, gateways: list[ServerProcess], secret: str,
                                  slots: int, within_s: float = 10.0) -> None:
    """Wait until ``slots`` requests are admitted together again (hang-ups are noticed asynchronously)."""
    deadline = time.monotonic() + within_s
    while True:
        answers = await asyncio.gather(*[_chat(http, gateways[i % 2].url, secret, 50) for i in range(slots)])
        if all(answer.status_code == 200 for answer in answers):
            return
        assert time.monotonic() < deadline, [answer.json() for answer in answers]
        await asyncio.sleep(0.2)


async def _budget_race(gateways: list[ServerProcess], secret: str, max_tokens: int) -> tuple[int, Decimal]:
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*[_chat(http, gateways[i % 2].url, secret, max_tokens)
                                         for i in range(100)])
    admitted = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code != 200]
    assert {(answer.status_code, answer.json()["error"]["code"]) for answer in refused} == \
        {(402, "insufficient_quota")}
    spend = sum((_cost(answer.json()["usage"]) for answer in admitted), Decimal(0))
    return len(admitted), spend


def _cost(usage: dict[str, int]) -> Decimal:
    return usage["prompt_tokens"] * INPUT_PRICE + usage["completion_tokens"] * OUTPUT_PRICE


async def _price_of_one(gateway: ServerProcess, tenant: str, max_tokens: int) -> Decimal:
    async with httpx.AsyncClient(timeout=30) as http:
        probe = await _chat(http, gateway.url, _secret(gateway, tenant), max_tokens)
    return _cost(probe.json()["usage"])


@pytest.mark.battery(3)
async def test_budget_race_on_a_new_key(gateways: list[ServerProcess], tenant: str, figures: Figures) -> None:
    price = await _price_of_one(gateways[0], tenant, 1000)
    budget = price * 10 + price / 2
    secret = _secret(gateways[0], tenant, budget_amount=str(budget), budget_period="day")
    admitted, spend = await _budget_race(gateways, secret, 1000)
    figures.record(simultaneous=100, gateways=2, budget_covers=10, admitted=admitted, budget=budget, spend=spend)
    assert admitted == 10
    assert spend <= budget


@pytest.mark.battery(3)
async def test_budget_race_on_a_key_that_already_spent(gateways: list[ServerProcess], tenant: str,
                                                      figures: Figures) -> None:
    price = await _price_of_one(gateways[0], tenant, 1000)
    budget = price * 14 + price / 2
    secret = _secret(gateways[0], tenant, budget_amount=str(budget), budget_period="day")
    async with httpx.AsyncClient(timeout=30) as http:
        for index in range(4):
            assert (await _chat(http, gateways[index % 2].url, secret, 1000)).status_code == 200
    admitted, spend = await _budget_race(gateways, secret, 1000)  # 4 spent: the budget covers 10 more
    figures.record(simultaneous=100, already_spent=4, budget_covers=10, admitted=admitted, budget=budget,
                   spend=price * 4 + spend)
    assert admitted == 10
    assert price * 4 + spend <= budget


async def test_limits_survive_a_gateway_restart(store_dir: Path, gateway_env: dict[str, str], tenant: str,
                                                tmp_path: Path) -> None:
    first = ServerProcess(home=tmp_path / "first", store=store_dir, env=gateway_env).start()
    try:
        secret = _secret(first, tenant, rpm=3)
        async with httpx.AsyncClient(timeout=30) as http:
            assert [(await _chat(http, first.url, secret, 2)).status_code for _ in range(3)] == [200] * 3
    finally:
        first.stop()
    second = ServerProcess(home=tmp_path / "second", store=store_dir, env=gateway_env).start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await _chat(http, second.url, secret, 2)
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    finally:
        second.stop()


@pytest.mark.battery(2)
async def test_twenty_keys_at_twice_their_rpm_and_tpm_on_two_gateways(gateways: list[ServerProcess],
                                                                       tenant: str, figures: Figures) -> None:
    """Every key is offered 2x its RPM and TPM, half its requests through each gateway, over the rest of
    this minute and two whole minutes. In every key-window: admitted <= limit; in whole windows >= 90%."""
    rpm, max_tokens = 30, 8
    async with httpx.AsyncClient(timeout=30) as http:
        probe = await _chat(http, gateways[0].url, _secret(gateways[0], tenant), max_tokens)
        per_request = probe.json()["usage"]["total_tokens"]
        tpm = rpm * per_request
        keys = [_secret(gateways[0], tenant, rpm=rpm, tpm=tpm) for _ in range(20)]
        first_whole = (int(time.time()) // 60 + 1) * 60
        end = first_whole + 120
        drives = [_drive_key(http, gateways, secret, max_tokens, offset=0.1 + 0.02 * index, end=end)
                  for index, secret in enumerate(keys)]
        outcomes = await asyncio.gather(*drives)
    windows_seen = [w for windows in outcomes for w in windows.items()]
    whole = [counts for window, counts in windows_seen if window * 60 >= first_whole]
    figures.record(keys=20, gateways=2, offered="2x rpm and tpm", rpm=rpm, tpm=tpm, key_windows=len(windows_seen),
                   most_admitted_requests=max(c[0] for _w, c in windows_seen),
                   most_admitted_tokens=max(c[1] for _w, c in windows_seen),
                   fewest_admitted_in_a_whole_window=min((c[0] for c in whole), default=0))
    for windows in outcomes:
        for window, (requests, tokens) in windows.items():
            assert requests <= rpm and tokens <= tpm, windows
            if window * 60 >= first_whole:
                assert requests >= 0.9 * rpm and tokens >= 0.9 * tpm, windows


async def _drive_key(http: httpx.AsyncClient, gateways: list[ServerProcess], secret: str, max_tokens: int, *,
                     offset: float, end: float) -> dict[int, tuple[int, int]]:
    """One request per second (2x an RPM of 30), at ``offset`` into each second so that none straddles a
    minute; returns admitted (requests, tokens) per minute window of the send time."""
    admitted: dict[int, tuple[int, int]] = {}
    sent = 0
    while True:
        moment = int(time.time()) + 1 + offset
        if moment >= end:
            return admitted
        await asyncio.sleep(moment - time.time())
        answer = await _chat(http, gateways[sent % 2].url, secret, max_tokens)
        sent += 1
        window = int(moment // 60)
        requests, tokens = admitted.get(window, (0, 0))
        if answer.status_code == 200:
            admitted[window] = (requests + 1, tokens + answer.json()["usage"]["total_tokens"])
            continue
        assert answer.status_code == 429, answer.text
        assert set(answer.headers) >= SIX_HEADERS and int(answer.headers["retry-after"]) >= 1
        admitted.setdefault(window, (0, 0))


async def test_timed_out_requests_release_their_slots(store_dir: Path, gateway_env: dict[str, str],
                                                      tenant: str, tmp_path: Path) -> None:
    """A gateway whose requests time out after 50 ms: 4 x 4000 echo tokens never finish in time."""
    env = {**gateway_env, "METERWAY_REQUEST_TIMEOUT_S": "0.05"}
    impatient = ServerProcess(home=tmp_path / "impatient", store=store_dir, env=env).start()
    try:
        secret = _secret(impatient, tenant, max_concurrency=1)
        headers = {"Authorization": f"Bearer {secret}"}
        long = {"model": ECHO, "messages": HELLO, "max_tokens": 4000, "n": 4}
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            for _round in range(3):
                cut = await http.post(f"{impatient.url}/v1/chat/completions", json=long)
                assert cut.status_code >= 500, cut.text  # cut short by the request timeout
                await _until_full_concurrency(http, [impatient, impatient], secret, slots=1)
    finally:
        impatient.stop()
