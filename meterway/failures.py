"""Errors a caller chose to tolerate are never silent: each is logged with its traceback and counted.

``with tolerated("where"):`` replaces ``contextlib.suppress(Exception)``: the block's failure does not
propagate, but it is logged (``error_tolerated``, with ``where``) and counted in
``meterway_errors_tolerated_total{where}``, which the gateway's ``/metrics`` exposes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, generate_latest

if TYPE_CHECKING:
    from collections.abc import Iterator

REGISTRY = CollectorRegistry()
TOLERATED = Counter("meterway_errors_tolerated", "Errors caught, logged and not propagated, by where they were",
                    ["where"], registry=REGISTRY)
log = structlog.get_logger("meterway.failures")


@contextlib.contextmanager
def tolerated(where: str) -> Iterator[None]:
    """Run the block; an ``Exception`` from it is logged and counted under ``where``, then dropped."""
    try:
        yield
    except Exception as exc:
        TOLERATED.labels(where).inc()
        log.warning("error_tolerated", where=where, error=f"{type(exc).__name__}: {exc}", exc_info=exc)


def exposition() -> bytes:
    """The counter in Prometheus' text format."""
    return generate_latest(REGISTRY)
