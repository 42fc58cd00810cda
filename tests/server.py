"""A real meterway server process for end-to-end tests: ``meterway serve`` on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.processes import stop_group, wait_until_healthy

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
    cwd: Path = REPO  # elsewhere (with PYTHONPATH in env) to run an installed copy instead of this checkout
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
            self.process = subprocess.Popen([sys.executable, *self.command], cwd=self.cwd, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy(timeout_s)
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self.process is not None
        wait_until_healthy(self.process, f"{self.url}/health", self.log, timeout_s)

    def stop(self) -> None:
        stop_group(self.process)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    def create_key(self, tenant: str, name: str = "test", **limits: object) -> dict[str, object]:
        with self.admin() as client:
            response = client.post("/v1/keys", json={"tenant": tenant, "name": name, **limits})
        response.raise_for_status()
        return dict(response.json())
