"""``client.prices`` (the price books), ``client.usage`` (the usage report) and ``client.periods`` (period close
and statements)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._types import BillingPeriod, InstancePrice, Price, Statement, UsageReport

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


class Periods(Resource):
    """Billing periods: the closed ones, closing one (admin), a closed period's statements (a tenant: its own)."""

    def list(self) -> list[BillingPeriod]:
        """The closed periods, newest first."""
        return self._list(BillingPeriod, "/v1/billing/periods")

    def close(self, period: str) -> builtins.list[Statement]:
        """Close ``period`` ('YYYY-MM', ended) and return its statements; raises ``ConflictError`` if it is
        already closed or has not ended."""
        return self._value("POST", f"/v1/billing/periods/{period}/close", _statements)  # type: ignore[no-any-return]

    def statements(self, period: str, *, tenant: str | None = None) -> builtins.list[Statement]:
        """The statements of a closed period."""
        return self._list(Statement, f"/v1/billing/periods/{period}/statements", {"tenant": tenant})

    def statements_csv(self, period: str, *, tenant: str | None = None) -> str:
        """The same statements as CSV text, one row per tenant."""
        params = {"tenant": tenant, "format": "csv"}
        return self._value("GET", f"/v1/billing/periods/{period}/statements", str,  # type: ignore[no-any-return]
                           params=params)


def _statements(body: dict[str, Any]) -> builtins.list[Statement]:
    return [Statement.from_dict(item) for item in body.get("data", [])]


def _query(start: str | None, end: str | None, group_by: str | Sequence[str] | None,
           tenant: str | None) -> dict[str, str | None]:
    grouping = group_by if group_by is None or isinstance(group_by, str) else ",".join(group_by)
    return {"start": start, "end": end, "group_by": grouping, "tenant": tenant}
