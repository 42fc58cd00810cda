"""A real meterway server process for end-to-end tests: ``meterway serve`` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY = "mw-test-admin-key-0123456789abcdefghijklmnopqrstuv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One gateway process; ``url`` is its base URL, ``log`` its JSON log file."""

    home: Path
    store: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    command: tuple[str, ...] = ("-m", "service.cli", "serve")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "METERWAY_HOME": str(self.home), "METERWAY_STORE": str(self.store),
               "METERWAY_PORT": str(self.port), "METERWAY_ADMIN_KEY": ADMIN_KEY,
               "METERWAY_ENABLE_TEST_MODEL": "1",
               # No pre-started worker: most test gateways serve only the echo model, on 2 shared cores.
               "METERWAY_POOL_STANDBY": "0", **self.env}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, *self.command], cwd=REPO, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy(timeout_s)
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    def create_key(self, tenant: str, name: str = "test", **limits: object) -> dict[str, object]:
        with self.admin() as client:
            response = client.post("/v1/keys", json={"tenant": tenant, "name": name, **limits})
        response.raise_for_status()
        return dict(response.json())
