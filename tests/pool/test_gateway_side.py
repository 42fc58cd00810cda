"""The gateway never imports torch: the app, the pool's gateway side and the echo model all run without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

GATEWAY_SIDE = textwrap.dedent("""
    import asyncio, importlib.abc, sys
    from pathlib import Path

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("the gateway must not import torch")
            return None

    sys.meta_path.insert(0, NoTorch())

    import models.pool, models.pool.api, models.pool.local, models.pool.hosts, models.pool.echo
    import models.pool.worker_host, models.pool.stream, models.pool.protocol, models.pool.adapters
    import service.app  # the whole gateway composition
    from models.catalog import load_catalog
    from models.pool.api import GenerationJob
    from models.runtime.api import SamplingParams
    from meterway.settings import PoolSettings, Settings

    async def main():
        catalog = load_catalog(include_test_model=True)
        echo = next(s for s in catalog if s.id == "meterway-echo")
        settings = Settings(pool=PoolSettings(standby=False))
        pool = models.pool.build_pool(settings, Path("var/no-store"), catalog)
        await pool.start()
        stream = pool.generate(GenerationJob("r", echo, (3, 4), SamplingParams(max_tokens=3)))
        deltas = [d async for d in stream]
        await pool.close()
        print(deltas[-1].completion_tokens, deltas[-1].finish_reason)

    asyncio.run(main())
    assert "torch" not in sys.modules
""")


def test_pool_and_echo_model_run_without_torch() -> None:
    done = subprocess.run([sys.executable, "-c", GATEWAY_SIDE], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["3", "length"]
