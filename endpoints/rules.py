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


KINDS = ("online", "batch")


def check_kind(kind: str, was: str | None, traffic: dict[str, int], mirror: dict[str, int],
               default: str | None, deployments: set[str]) -> None:
    """Refuse, naming the field, what an endpoint of ``kind`` cannot have: a batch endpoint runs its jobs on
    its ``default_deployment`` and takes no live or mirrored traffic; an online one has no default. The kind of
    an existing endpoint (``was``) does not change."""
    if was is not None and kind != was:
        raise InvalidRequest(f"endpoint kind cannot change from {was!r} to {kind!r}; create another endpoint",
                             param="kind")
    if kind == "online":
        if default is not None:
            raise InvalidRequest("default_deployment applies to a batch endpoint; an online endpoint splits its "
                                 "traffic", param="default_deployment")
        return
    for field, weights in (("traffic", traffic), ("mirror_traffic", mirror)):
        if weights:
            raise InvalidRequest(f"a batch endpoint takes no {field}: its jobs run on its default_deployment",
                                 param=field)
    if default is not None and default not in deployments:
        raise InvalidRequest(f"default_deployment names {default!r}, which is not a deployment of this endpoint",
                             param="default_deployment")


def check_endpoint_name(name: str) -> None:
    check_name(name, "name")
    if name in RESERVED:
        raise InvalidRequest(f"the endpoint name {name!r} is reserved: it is the built-in endpoint at /v1",
                             param="name")


def holds_traffic(name: str, traffic: dict[str, int], mirror: dict[str, int]) -> bool:
    return bool(traffic.get(name, 0) or mirror.get(name, 0))


MAX_INSTANCES = 16
DEDICATED_ONLY = ("instance_type", "instance_count", "min_instances", "max_instances", "target_concurrency",
                  "cooldown_s")
AUTOSCALE_ONLY = ("target_concurrency", "cooldown_s")


def check_capacity(capacity: str, fields: dict[str, int | str | None]) -> None:
    """Refuse, naming the field, capacity settings a deployment cannot have: dedicated settings on a serverless
    deployment, both a fixed count and autoscaling bounds, or neither, or bounds the wrong way round."""
    given = {name for name in DEDICATED_ONLY if fields.get(name) is not None}
    if capacity == "serverless":
        if given:
            name = next(n for n in DEDICATED_ONLY if n in given)
            raise InvalidRequest(f"{name} applies to dedicated capacity; this deployment is serverless (the "
                                 "shared pool, billed per token)", param=name)
        return
    autoscale = {"min_instances", "max_instances"} & given
    if "instance_count" in given and autoscale:
        raise InvalidRequest("give either instance_count (a fixed number of instances) or min_instances and "
                             "max_instances (autoscaling), not both", param="instance_count")
    if "instance_count" in given:
        if extra := sorted(set(AUTOSCALE_ONLY) & given):
            raise InvalidRequest(f"{extra[0]} applies to autoscaling (min_instances and max_instances), not to a "
                                 "fixed instance_count", param=extra[0])
        return
    if autoscale != {"min_instances", "max_instances"}:
        missing = "instance_count" if not autoscale else ({"min_instances", "max_instances"} - autoscale).pop()
        raise InvalidRequest("a dedicated deployment needs instance_count, or min_instances and max_instances",
                             param=missing)
    if int(fields["min_instances"] or 0) > int(fields["max_instances"] or 0):
        raise InvalidRequest("min_instances must not exceed max_instances", param="min_instances")
