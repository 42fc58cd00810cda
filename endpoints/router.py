"""Which deployment serves one request, and which (if any) gets its mirrored copy.

Pure and separately tested: weighted random over the live traffic, drawn once per request; a pinned
deployment bypasses the weights (to try one at 0% live traffic) and is never mirrored; a sampled request is
mirrored to at most one mirror deployment, each with the probability of its percent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from meterway.errors import Conflict, NotFound

PIN_HEADERS = ("azureml-model-deployment", "x-meterway-deployment")  # the reference design's name first


@dataclass(frozen=True)
class Choice:
    """The deployment that serves the request, and the one that gets a mirrored copy (or None)."""

    deployment: str
    mirror: str | None = None


def choose(traffic: dict[str, int], mirror: dict[str, int], deployments: set[str], *, pin: str | None = None,
           pin_header: str = PIN_HEADERS[0], endpoint: str = "", rng: random.Random | None = None) -> Choice:
    """One request's deployments under the endpoint's weights (percent per deployment)."""
    if pin is not None:
        if pin not in deployments:
            raise NotFound(f"endpoint {endpoint!r} has no deployment {pin!r}", param=pin_header,
                           code="deployment_not_found")
        return Choice(pin)
    draw = rng or _RANDOM
    live = _pick(traffic, draw.random() * 100)
    if live is None:
        raise Conflict(f"endpoint {endpoint!r} sends no live traffic to any deployment: set its traffic, or pin "
                       f"a deployment with the {pin_header} header", code="no_live_traffic")
    return Choice(live, _pick(mirror, draw.random() * 100))


def _pick(weights: dict[str, int], point: float) -> str | None:
    """The deployment whose slice of [0, 100) holds ``point`` (slices in name order; past their sum: None)."""
    edge = 0
    for name in sorted(weights):
        edge += weights[name]
        if point < edge:
            return name
    return None


_RANDOM = random.Random()  # traffic splitting needs uniform draws, not secrecy
