"""A burst's generation requests go to the pool together; a lone request is not held."""

from __future__ import annotations

import asyncio

from service.arrivals import Arrivals, is_generation

HOLD_S = 30.0  # long enough that only the other requests can end a hold in these tests


async def test_a_lone_request_is_not_held() -> None:
    arrivals = Arrivals(HOLD_S)
    with arrivals.arriving():
        await asyncio.wait_for(arrivals.ready(), timeout=5)
    assert arrivals.reading == 0


async def test_a_ready_request_waits_for_those_still_being_read() -> None:
    arrivals = Arrivals(HOLD_S)
    read_second = asyncio.Event()
    order: list[str] = []

    async def request(name: str, read: asyncio.Event | None) -> None:
        with arrivals.arriving():
            if read is not None:
                await read.wait()
            await arrivals.ready()
            order.append(name)

    second = asyncio.create_task(request("second", read_second))
    await asyncio.sleep(0)
    first = asyncio.create_task(request("first", None))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not first.done() and arrivals.reading == 1  # ready, held for "second"
    read_second.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert sorted(order) == ["first", "second"] and arrivals.reading == 0


async def test_a_request_that_fails_while_being_read_releases_the_others() -> None:
    arrivals = Arrivals(HOLD_S)
    fail = asyncio.Event()

    async def failing() -> None:
        with arrivals.arriving():
            await fail.wait()
            raise ValueError("bad request")

    async def ready() -> None:
        with arrivals.arriving():
            await arrivals.ready()

    bad = asyncio.create_task(failing())
    await asyncio.sleep(0)
    good = asyncio.create_task(ready())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not good.done()
    fail.set()
    await asyncio.wait_for(good, timeout=5)
    assert isinstance(bad.exception(), ValueError)


async def test_requests_arriving_after_a_request_is_ready_do_not_hold_it() -> None:
    arrivals = Arrivals(HOLD_S)
    read = {name: asyncio.Event() for name in ("b", "c")}

    async def request(name: str) -> None:
        with arrivals.arriving():
            if name in read:
                await read[name].wait()
            await arrivals.ready()

    b = asyncio.create_task(request("b"))
    await asyncio.sleep(0)
    a = asyncio.create_task(request("a"))  # ready at once, held for "b"
    for _ in range(5):
        await asyncio.sleep(0)
    c = asyncio.create_task(request("c"))  # arrives while "a" is held
    await asyncio.sleep(0)
    read["b"].set()
    await asyncio.wait_for(a, timeout=5)  # released by "b" alone; "b" itself is now held for "c"
    assert not c.done()
    read["c"].set()
    await asyncio.wait_for(asyncio.gather(b, c), timeout=5)


def test_only_generation_posts_are_counted() -> None:
    assert is_generation("POST", "/v1/chat/completions")
    assert is_generation("POST", "/v1/completions")
    assert not is_generation("POST", "/v1/embeddings")
    assert not is_generation("GET", "/v1/models")
