"""The built wheel is the whole product: installed on its own (not this checkout), it migrates a database,
serves, and answers a chat call; a server that does not migrate refuses a database that was not migrated."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openai import OpenAI

from tests.server import ADMIN_KEY, REPO, ServerProcess

pytestmark = pytest.mark.slow


def test_the_installed_wheel_migrates_and_serves(tmp_path: Path, store_dir: Path) -> None:
    built = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(built)], check=True, cwd=tmp_path)
    [wheel] = built.glob("meterway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"migrations/env.py", "migrations/versions/0001_core.py", "console/templates/base.html"} <= names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True)
    # The installed copy, not this checkout: run outside the repository, with the wheel's files first on the path.
    env = {"PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import meterway.db, service.app; print(meterway.db.MIGRATIONS)"],
                           cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()) == site / "migrations"
    home = tmp_path / "home"
    # As in production: migrations run once, by `meterway migrate`; serve only checks the schema is current.
    env |= {"METERWAY_MIGRATE_ON_SERVE": "0", "METERWAY_POOL_STANDBY": "0"}
    run_env = {**os.environ, **env, "METERWAY_HOME": str(home), "METERWAY_STORE": str(store_dir)}

    def meterway(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", command], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=120, check=False)

    refused = meterway("serve")
    assert refused.returncode != 0 and "run `meterway migrate` first" in refused.stderr, refused.stderr[-2000:]
    migrated = meterway("migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    server = ServerProcess(home=home, store=store_dir, env=env, cwd=tmp_path).start()
    try:
        chat = OpenAI(base_url=f"{server.url}/v1", api_key=ADMIN_KEY, max_retries=0).chat.completions.create(
            model="meterway-echo", max_tokens=3, messages=[{"role": "user", "content": "one two three four"}])
        assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens == 3
    finally:
        server.stop()
