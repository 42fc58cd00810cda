"""A tolerated error is dropped, but logged and counted — never silent."""

from __future__ import annotations

import structlog

from meterway import failures


def _count(where: str) -> float:
    return failures.REGISTRY.get_sample_value("meterway_errors_tolerated_total", {"where": where}) or 0.0


def test_a_tolerated_error_is_logged_and_counted() -> None:
    before = _count("test.block")
    with structlog.testing.capture_logs() as logs, failures.tolerated("test.block"):
        raise RuntimeError("the final count never came")
    assert _count("test.block") == before + 1
    assert [(e["event"], e["where"], e["error"]) for e in logs] == [
        ("error_tolerated", "test.block", "RuntimeError: the final count never came")]
    assert b'meterway_errors_tolerated_total{where="test.block"}' in failures.exposition()


def test_a_block_that_succeeds_counts_nothing() -> None:
    before = _count("test.fine")
    with structlog.testing.capture_logs() as logs, failures.tolerated("test.fine"):
        pass
    assert _count("test.fine") == before
    assert logs == []
