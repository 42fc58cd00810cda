"""The environment a worker process starts with (read back from the live child's /proc entry)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.pool.standby import spawn_worker

if TYPE_CHECKING:
    import pytest


async def _worker_env() -> dict[str, str]:
    process = await spawn_worker("models.runtime:load")
    try:
        raw = Path(f"/proc/{process.pid}/environ").read_bytes()
    finally:
        assert process.stdin is not None
        process.stdin.close()  # a worker exits when its stdin closes
        await process.wait()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


async def test_workers_spin_a_bounded_time_before_idle_openmp_threads_sleep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    env = await _worker_env()
    assert env["GOMP_SPINCOUNT"] == "100000"
    assert "OMP_WAIT_POLICY" not in env


async def test_an_operators_wait_policy_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    env = await _worker_env()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "GOMP_SPINCOUNT" not in env


async def test_an_operators_spin_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "5000")
    assert (await _worker_env())["GOMP_SPINCOUNT"] == "5000"
