"""A meterway server for the serving benchmark: the real gateway process with auth and metering on.

It is started as ``python -m service.cli serve`` in a fresh state directory (SQLite, the local durable event
log) over an existing model store; if the CLI cannot start (a plugin module of another package missing), the
same app is started directly: migrate, then ``uvicorn.run(create_app(settings))``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.processes import stop_group, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent

# The fallback launcher: what ``meterway serve`` does, minus importing the catalog (the store is ready).
DIRECT_LAUNCH = """
import sys, uvicorn
from service.settings import Settings
from service.db import migrate
from service.app import create_app
settings = Settings.from_env()
migrate(settings.database_url)
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MeterwayServer:
    """One gateway process on ``port``, state under ``home``, models from ``store``."""

    home: Path
    store: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    admin_key: str = field(default_factory=lambda: "mw-bench-admin-" + secrets.token_hex(16))
    launcher: str = "cli"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def start(self, timeout_s: float = 180.0) -> float:
        """Start the gateway (CLI first, direct launch as the fallback); returns seconds until healthy."""
        try:
            return self._start(self._command("cli"), timeout_s)
        except RuntimeError as exc:
            if "ModuleNotFoundError" not in str(exc) and "ImportError" not in str(exc):
                raise
            print(f"meterway serve failed to import ({exc!s:.200}); starting the app directly", flush=True)
            self.launcher = "direct"
            return self._start(self._command("direct"), timeout_s)

    def _command(self, launcher: str) -> list[str]:
        if launcher == "cli":
            return [sys.executable, "-m", "service.cli", "serve"]
        return [sys.executable, "-c", DIRECT_LAUNCH, str(self.port)]

    def _start(self, command: list[str], timeout_s: float) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "METERWAY_HOME": str(self.home), "METERWAY_STORE": str(self.store),
               "METERWAY_PORT": str(self.port), "METERWAY_ADMIN_KEY": self.admin_key, **self.env}
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until_healthy(self.process, f"{self.url}/health", self.log, timeout_s,
                           "meterway", poll_s=0.2)
        return time.perf_counter() - started

    def stop(self) -> None:
        stop_group(self.process)

    def create_key(self, tenant: str = "bench", name: str = "bench") -> str:
        """A tenant key (no limits) made through the admin API; returns its secret."""
        response = httpx.post(f"{self.url}/v1/keys", json={"tenant": tenant, "name": name}, timeout=60,
                              headers={"Authorization": f"Bearer {self.admin_key}"})
        response.raise_for_status()
        body = response.json()
        return str(body.get("key") or body.get("secret") or body["api_key"])

    def model_state(self, model: str, key: str) -> str:
        """``cold`` / ``loading`` / ``ready`` as ``GET /v1/models/{id}`` reports it."""
        response = httpx.get(f"{self.url}/v1/models/{model}", headers={"Authorization": f"Bearer {key}"},
                             timeout=30)
        response.raise_for_status()
        body = response.json()
        return str(body.get("state") or body.get("status") or body.get("meterway", {}).get("state", "?"))
