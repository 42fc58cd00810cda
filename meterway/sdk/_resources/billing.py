"""``client.prices`` (the price books) and ``client.usage`` (the usage report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._types import InstancePrice, Price, UsageReport

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence


class Prices(Resource):
    """Per-token prices (per tier) and dedicated instance prices; adding one is for the admin."""

    def list(self, *, model: str | None = None, tier: str | None = None) -> list[Price]:
        """The price book, optionally one model's or one tier's (``online`` / ``batch``)."""
        return self._list(Price, "/v1/prices", {"model": model, "tier": tier})

    def create(self, *, model: str, input_per_million: str, output_per_million: str, tier: str | None = None,
               effective_from: str | int | None = None) -> Price:
        """A new price from ``effective_from`` (default now); prices are decimal strings, never floats."""
        body = body_of(model=model, input_per_million=input_per_million, output_per_million=output_per_million,
                       tier=tier, effective_from=effective_from)
        return self._one(Price, "POST", "/v1/prices", json=body)

    def list_instances(self, *, model: str | None = None) -> builtins.list[InstancePrice]:
        """The instance price book (per started instance-minute)."""
        return self._list(InstancePrice, "/v1/prices/instances", {"model": model})

    def create_instance(self, *, model: str, instance_type: str, per_minute: str,
                        effective_from: str | int | None = None) -> InstancePrice:
        """A new instance price."""
        body = body_of(model=model, instance_type=instance_type, per_minute=per_minute,
                       effective_from=effective_from)
        return self._one(InstancePrice, "POST", "/v1/prices/instances", json=body)


class Usage(Resource):
    """Billable usage between two moments, grouped by day, model, key and/or tenant."""

    def report(self, *, start: str | None = None, end: str | None = None,
               group_by: str | Sequence[str] | None = None, tenant: str | None = None) -> UsageReport:
        """The report (``group_by`` default ``day,model``; an empty one gives the total only)."""
        return self._one(UsageReport, "GET", "/v1/usage", params=_query(start, end, group_by, tenant))

    def csv(self, *, start: str | None = None, end: str | None = None,
            group_by: str | Sequence[str] | None = None, tenant: str | None = None) -> str:
        """The same report as CSV text: one row per line, group columns first."""
        params = {**_query(start, end, group_by, tenant), "format": "csv"}
        return self._value("GET", "/v1/usage", str, params=params)  # type: ignore[no-any-return]


def _query(start: str | None, end: str | None, group_by: str | Sequence[str] | None,
           tenant: str | None) -> dict[str, str | None]:
    grouping = group_by if group_by is None or isinstance(group_by, str) else ",".join(group_by)
    return {"start": start, "end": end, "group_by": grouping, "tenant": tenant}
