"""Running a server as a child process and waiting for it: shared by the tests, the benchmarks and local runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from pathlib import Path


def wait_until_healthy(process: subprocess.Popen[bytes], health_url: str, log: Path, timeout_s: float,
                       name: str = "server", poll_s: float = 0.2) -> float:
    """Seconds until ``health_url`` answers 200; stops the process and raises with its log tail otherwise."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    stop_group(process)
    tail = log.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"{name} did not become healthy in {timeout_s:.0f} s:\n{tail}")


def stop_group(process: subprocess.Popen[bytes] | None, grace_s: float = 30.0) -> None:
    """SIGTERM the process group (the server and its workers), SIGKILL after ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
