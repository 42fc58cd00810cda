"""The peer server: ``transformers serve --continuous-batching`` from the same transformers release.

It lives in its own virtual environment (``bench/.peer-venv``, git-ignored), installed here on first use, so
that its dependencies (fastapi, uvicorn, openai...) never mix with meterway's. It is pointed at the very
directory meterway serves from (the model store), offline, on CPU in float32; it names the model by that path.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from service.processes import stop_group, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent
PEER_VENV = REPO / "bench" / ".peer-venv"
TORCH_VERSION = "2.13.0"
WHEELS = Path("/opt/wheels")


def peer_python() -> Path:
    return PEER_VENV / "bin" / "python"


def peer_versions() -> dict[str, str]:
    """torch and transformers as installed in the peer's venv."""
    code = "import torch, transformers; print(torch.__version__, transformers.__version__)"
    out = subprocess.run([str(peer_python()), "-c", code], capture_output=True, text=True, check=True).stdout
    torch_version, transformers_version = out.split()
    return {"torch": torch_version, "transformers": transformers_version}


def ensure_peer_venv(log: Path) -> dict[str, str]:
    """Create the peer venv with the same transformers release as meterway's, unless it is already there."""
    wanted = metadata.version("transformers")
    if peer_python().exists():
        try:
            versions = peer_versions()
            if versions["transformers"] == wanted:
                return versions
        except (subprocess.CalledProcessError, ValueError):
            pass  # half-built venv: install over it
    print(f"installing the peer (transformers[serving]=={wanted}) into {PEER_VENV} ...", flush=True)
    links = ["--find-links", str(WHEELS)] if WHEELS.is_dir() else []
    with log.open("ab") as out:
        subprocess.run(["python3", "-m", "venv", str(PEER_VENV)], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", f"torch=={TORCH_VERSION}",
                        f"transformers[serving]=={wanted}", *links], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
    return peer_versions()


@dataclass
class PeerServer:
    """One ``transformers serve`` process preloading ``model_dir``; ``model`` is the name it answers to."""

    model_dir: Path
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        return str(self.model_dir)

    def command(self) -> list[str]:
        return [str(PEER_VENV / "bin" / "transformers"), "serve", str(self.model_dir),
                "--continuous-batching", "--device", "cpu", "--dtype", "float32",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]

    def start(self, timeout_s: float = 300.0) -> float:
        """Start it and wait until it answers ``/health``; returns the seconds that took (model preloaded)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **self.env}
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command(), env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until_healthy(self.process, f"{self.url}/health", self.log, timeout_s,
                           "transformers serve", poll_s=0.5)
        return time.perf_counter() - started

    def stop(self) -> None:
        stop_group(self.process)
