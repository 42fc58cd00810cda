"""What an endpoint's traffic and mirror weights may be, as in the reference design: live traffic sums to 100
(or is empty), mirrored traffic sums to at most 50 and goes only to deployments with no live traffic, and
every weight names a deployment of the endpoint."""

from __future__ import annotations

import re

from meterway.errors import InvalidRequest

MAX_MIRROR_PERCENT = 50
RESERVED = frozenset({"serverless"})  # the built-in endpoint's name in usage reports
LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")  # DNS-label style: the name is part of a URL


def check_name(name: str, param: str) -> None:
    if not LABEL.match(name):
        raise InvalidRequest(f"{param} {name!r} must be 1-32 lower-case letters, digits or '-', starting with a "
                             "letter and not ending with '-'", param=param)


def check_weights(traffic: dict[str, int], mirror: dict[str, int], deployments: set[str]) -> None:
    """Raise ``InvalidRequest`` naming the field for weights an endpoint cannot have."""
    for field, weights in (("traffic", traffic), ("mirror_traffic", mirror)):
        unknown = sorted(set(weights) - deployments)
        if unknown:
            raise InvalidRequest(f"{field} names {unknown[0]!r}, which is not a deployment of this endpoint",
                                 param=field)
    live = sum(traffic.values())
    if traffic and live != 100:
        raise InvalidRequest(f"traffic must sum to 100 (or be empty), not {live}", param="traffic")
    mirrored = sum(mirror.values())
    if mirrored > MAX_MIRROR_PERCENT:
        raise InvalidRequest(f"mirror_traffic may sum to at most {MAX_MIRROR_PERCENT}, not {mirrored}",
                             param="mirror_traffic")
    both = sorted(name for name, percent in mirror.items() if percent and traffic.get(name, 0))
    if both:
        raise InvalidRequest(f"deployment {both[0]!r} takes live traffic; only a deployment at 0% live traffic "
                             "can be mirrored to", param="mirror_traffic")


def check_endpoint_name(name: str) -> None:
    check_name(name, "name")
    if name in RESERVED:
        raise InvalidRequest(f"the endpoint name {name!r} is reserved: it is the built-in endpoint at /v1",
                             param="name")


def holds_traffic(name: str, traffic: dict[str, int], mirror: dict[str, int]) -> bool:
    return bool(traffic.get(name, 0) or mirror.get(name, 0))
