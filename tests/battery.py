"""The reliability and security battery (``../shared/brief/targets.md``, rows 1-18) as marked tests.

A row's tests carry ``@pytest.mark.battery(n)`` and may record the figures they measured through the
``figures`` fixture. They run in ``make test`` at the suite's scale; ``python -m bench.battery`` runs only
them, at full scale (``METERWAY_TEST_BATTERY_SCALE=full``: longer outages, more load), collects each test's
outcome and figures from ``METERWAY_TEST_BATTERY_OUT`` (JSON lines) and prints every row with its pass mark.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

OUT_ENV = "METERWAY_TEST_BATTERY_OUT"
SCALE_ENV = "METERWAY_TEST_BATTERY_SCALE"


def full_scale() -> bool:
    """Whether the battery command runs this (its load and outages at full size), not the suite."""
    return os.environ.get(SCALE_ENV, "") == "full"


def scaled(suite: float, full: float) -> float:
    return full if full_scale() else suite


def _write(line: dict[str, Any]) -> None:
    out = os.environ.get(OUT_ENV)
    if out:
        with Path(out).open("a") as handle:
            handle.write(json.dumps(line, default=str) + "\n")


class Figures:
    """What one battery test measured, e.g. ``figures.record(requests=2000, lost=0)``."""

    def __init__(self, row: int, test: str) -> None:
        self.row, self.test = row, test

    def record(self, **numbers: Any) -> None:
        _write({"row": self.row, "test": self.test, "figures": numbers})


def _row(item: pytest.Item) -> int | None:
    marker = item.get_closest_marker("battery")
    return int(marker.args[0]) if marker is not None else None


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    row = _row(request.node)
    assert row is not None, "the figures fixture is for tests marked battery(row)"
    yield Figures(row, request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    row = _row(item)
    if row is None or not os.environ.get(OUT_ENV):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _write({"row": row, "test": item.nodeid, "outcome": report.outcome,
                "seconds": round(report.duration, 1)})
