"""The endpoint tests' gateway: one real server per module, on SQLite and on PostgreSQL (a module that needs
other settings defines its own ``gateway``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.server import ServerProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, store_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"METERWAY_DATABASE_URL": request.getfixturevalue("module_pg_url")} if request.param == "postgresql" else {}
    process = ServerProcess(home=tmp_path_factory.mktemp("endpoints"), store=store_dir, env=env).start()
    yield process
    process.stop()
