"""Bus unreachable: events are spooled on the gateway and forwarded later; a full spool refuses (503)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from billing.bus import BusOptions, decode_event
from billing.consumer import LedgerConsumer
from billing.ledger import LedgerWriter
from billing.local_bus import LocalOutboxBus
from billing.meter import Meter
from billing.nats_bus import NatsJetStreamBus
from billing.spool import FileSpool
from meterway.db import Database
from meterway.errors import BillingUnavailable
from tests.billing.helpers import ledger_rows
from tests.server import free_port

REPO = Path(__file__).resolve().parents[2]


class TcpProxy:
    """A TCP forwarder we can switch off and on, to make a real service unreachable and back."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _ledger_ids(database: Database) -> list[str]:
    return sorted(row.request_id for row in await ledger_rows(database))


async def _check_spool_then_forward(meter: Meter, proxy: TcpProxy, make_event, consume) -> list:
    events = [make_event() for _ in range(30)]
    for event in events:
        await meter.record(event)  # the bus is down: each lands in the spool, fsynced
    assert meter.bus_down and meter.spool.backlog() == 30
    await meter.ensure_available()  # below the spool limit: still serving
    for _ in range(25):
        events.append(make_event())
        await meter.record(events[-1])
    with pytest.raises(BillingUnavailable) as refused:
        await meter.ensure_available()
    assert refused.value.status == 503

    await proxy.start()  # the bus is back
    assert await meter.forward_spool() == 55
    assert not meter.bus_down and meter.spool.backlog() == 0
    await meter.ensure_available()
    events.append(make_event())
    await meter.record(events[-1])  # straight to the bus again
    await consume()
    return events


@pytest.mark.battery(7)
async def test_nats_down_spools_and_forwards(sqlite_url, tmp_path, make_event) -> None:
    name = f"MWTEST_{uuid.uuid4().hex[:10]}"
    options = BusOptions(stream=name, subject=f"mwtest.{name}", durable=f"{name}_ledger")
    proxy = TcpProxy(4222)
    meter = Meter(NatsJetStreamBus(f"nats://127.0.0.1:{proxy.port}", options), FileSpool(tmp_path / "spool"),
                  spool_limit=50)
    database = Database.connect(sqlite_url)
    direct = NatsJetStreamBus("nats://127.0.0.1:4222", options)
    consumer = LedgerConsumer(direct, LedgerWriter(database.sessions, "usd"), batch_size=100, interval_s=0.5)
    try:
        events = await _check_spool_then_forward(meter, proxy, make_event, consumer.drain)
        assert await _ledger_ids(database) == sorted(e.request_id for e in events)
    finally:
        await (await direct._jetstream()).delete_stream(name)
        await direct.close()
        await meter.bus.close()
        await proxy.stop()
        await database.close()


@pytest.mark.battery(7)
async def test_database_down_spools_for_the_local_bus(pg_url, tmp_path, make_event) -> None:
    proxy = TcpProxy(5432)
    via_proxy = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    gateway_db = Database.connect(via_proxy)
    bus_via_proxy = LocalOutboxBus(gateway_db, BusOptions(publish_timeout_s=1.0))
    meter = Meter(bus_via_proxy, FileSpool(tmp_path / "spool"), spool_limit=50)
    database = Database.connect(pg_url)
    bus = LocalOutboxBus(database, BusOptions())
    consumer = LedgerConsumer(bus, LedgerWriter(database.sessions, "usd"), batch_size=100, interval_s=0.01)
    try:
        events = await _check_spool_then_forward(meter, proxy, make_event, consumer.drain)
        assert await _ledger_ids(database) == sorted(e.request_id for e in events)
    finally:
        await gateway_db.close()
        await proxy.stop()
        await database.close()


@pytest.mark.battery(7)
async def test_spool_of_a_gateway_killed_mid_way_is_forwarded_by_the_next(sqlite_url, tmp_path,
                                                                         make_event) -> None:
    spool_dir = tmp_path / "spool"
    events = [make_event() for _ in range(5)]
    script = (
        "import asyncio, os, signal, sys\n"
        "from billing.bus import decode_event\n"
        "from billing.spool import FileSpool\n"
        "async def main():\n"
        "    spool = FileSpool(__import__('pathlib').Path(sys.argv[1]))\n"
        "    for line in sys.stdin.buffer.read().splitlines():\n"
        "        await spool.append(decode_event(line))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n")
    from billing.bus import encode_event

    feed = b"\n".join(encode_event(e) for e in events)
    done = subprocess.run([sys.executable, "-c", script, str(spool_dir)], input=feed, cwd=REPO, check=False)
    assert done.returncode < 0  # it died without sealing its spool file
    database = Database.connect(sqlite_url)
    bus = LocalOutboxBus(database, BusOptions())
    try:
        assert await Meter(bus, FileSpool(spool_dir)).forward_spool() == 5
        writer = LedgerWriter(database.sessions, "usd")
        await LedgerConsumer(bus, writer, batch_size=10, interval_s=0.01).drain()
        assert await _ledger_ids(database) == sorted(e.request_id for e in events)
        assert decode_event(encode_event(events[0])) == events[0]
    finally:
        await database.close()


async def test_nats_backlog_is_what_the_consumer_has_not_acked(sqlite_url, make_event) -> None:
    name = f"MWTEST_{uuid.uuid4().hex[:10]}"
    options = BusOptions(stream=name, subject=f"mwtest.{name}", durable=f"{name}_ledger")
    bus = NatsJetStreamBus("nats://127.0.0.1:4222", options)
    database = Database.connect(sqlite_url)
    try:
        for _ in range(5):
            await bus.publish(make_event())
        assert await bus.pending() == 5
        writer = LedgerWriter(database.sessions, "usd")
        await LedgerConsumer(bus, writer, batch_size=2, interval_s=0.5).drain()
        assert await bus.pending() == 0
        assert len(await ledger_rows(database)) == 5
    finally:
        await (await bus._jetstream()).delete_stream(name)
        await bus.close()
        await database.close()
