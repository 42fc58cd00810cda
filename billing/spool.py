"""The gateway's durable spool: usage events that the bus could not take, kept on local disk until it can.

Each process appends JSON lines to its own file ``<pid>-<uuid>.jsonl`` and fsyncs before returning. To
forward, a file is renamed to ``.ready`` (the writer starts a new one) and claimed by renaming it to
``.sending-<pid>``; renames are atomic, so two gateways never forward the same file. Files left by a process
that died are taken over. Forwarding twice is harmless: the request id de-duplicates.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import TYPE_CHECKING, BinaryIO

from billing.bus import BusUnavailable, decode_event, encode_event
from meterway.processes import pid_alive

if TYPE_CHECKING:
    from pathlib import Path

    from billing.bus import UsageBus
    from billing.events import UsageEvent



class FileSpool:
    """Append-only files of events under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pid = os.getpid()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._lock = asyncio.Lock()
        self.count = 0  # events spooled by this process and not yet forwarded

    async def append(self, event: UsageEvent) -> None:
        """Write the event and fsync it; raises OSError if the disk refuses."""
        line = encode_event(event) + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._write, line)
            self.count += 1

    def _write(self, line: bytes) -> None:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / f"{self._pid}-{uuid.uuid4().hex}.jsonl"
            self._file = open(self._path, "ab")  # noqa: SIM115 - kept open across appends on purpose
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def _seal(self) -> None:
        """Close this process's current file and mark it ready to forward."""
        async with self._lock:
            if self._file is not None and self._path is not None:
                self._file.close()
                self._path.rename(self._path.with_suffix(".ready"))
                self._file, self._path = None, None

    def _claimable(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            name, owner = path.name, path.name.split("-", 1)[0]
            if ".sending-" in name:
                forwarder = int(name.rsplit("-", 1)[1])
                if forwarder != self._pid and not pid_alive(forwarder):
                    found.append(path)  # its forwarder died mid-way
            elif path.suffix == ".ready":
                found.append(path)
            elif path.suffix == ".jsonl" and self._orphaned(owner):
                found.append(path)  # its writer died before sealing it
        return found

    def _orphaned(self, owner: str) -> bool:
        return owner.isdigit() and int(owner) != self._pid and not pid_alive(int(owner))

    async def forward(self, bus: UsageBus) -> int:
        """Publish every spooled event; stops at the first bus failure (re-raised). Returns events sent."""
        await self._seal()
        sent = 0
        for path in self._claimable():
            claimed = path.with_name(f"{path.name.split('.')[0]}.sending-{self._pid}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another gateway claimed it first
            events = [decode_event(line) for line in claimed.read_bytes().splitlines() if line.strip()]
            try:
                for event in events:
                    await bus.publish(event)
            except BusUnavailable:
                claimed.rename(claimed.with_name(claimed.name.split(".")[0] + ".ready"))
                raise
            claimed.unlink()
            sent += len(events)
            self.count = max(0, self.count - len(events))
        return sent

    def backlog(self) -> int:
        """Events waiting in any spool file here (counts lines; used by health checks and tests)."""
        if not self.directory.is_dir():
            return 0
        return sum(path.read_bytes().count(b"\n") for path in self.directory.iterdir() if path.is_file())
