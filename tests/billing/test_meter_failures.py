"""A bus client failing in a way it does not declare still leaves the event durable (in the spool).

Found by battery row 7: when NATS went away, closing the broken connection cancelled the futures of other
publishes in flight; their ``CancelledError`` escaped ``Meter.record`` and a served request went unbilled.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from billing.meter import Meter
from billing.spool import FileSpool

if TYPE_CHECKING:
    from pathlib import Path

    from billing.events import UsageEvent


class FailingBus:
    """A bus whose publish fails as ``failure`` says; it records what it was given."""

    def __init__(self, failure: str) -> None:
        self.failure = failure
        self.published: list[UsageEvent] = []

    async def publish(self, event: UsageEvent) -> None:
        if self.failure == "cancelled future":  # the client's response future, cancelled by its own close
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(future.cancel)
            await future
        if self.failure == "undeclared error":
            raise RuntimeError("the client library broke in an unforeseen way")
        self.published.append(event)


@pytest.mark.parametrize("failure", ["cancelled future", "undeclared error"])
async def test_an_undeclared_publish_failure_spools_the_event(tmp_path: Path, make_event, failure: str) -> None:
    spool = FileSpool(tmp_path / "spool")
    meter = Meter(FailingBus(failure), spool)  # type: ignore[arg-type]
    event = make_event()
    await meter.record(event)
    assert meter.bus_down and spool.count == 1
    working = FailingBus("none")
    assert await spool.forward(working) == 1  # type: ignore[arg-type]
    assert [e.request_id for e in working.published] == [event.request_id]


async def test_a_cancelled_recording_task_is_still_cancelled(tmp_path: Path, make_event) -> None:
    class SlowBus:
        async def publish(self, event: UsageEvent) -> None:
            await asyncio.sleep(60)

    meter = Meter(SlowBus(), FileSpool(tmp_path / "spool"))  # type: ignore[arg-type]
    task = asyncio.create_task(meter.record(make_event()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
