"""Exact money: prices per 1M tokens and per instance-minute, exact Decimal costs, the one rounding rule, periods.

Nothing here is a float. A cost is exact until a statement line rounds it, once, with ``to_minor_units``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from meterway.errors import InvalidRequest

MILLION = Decimal(1_000_000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONLINE, BATCH = "online", "batch"
TIERS = (ONLINE, BATCH)  # token price tiers: requests, and the lines of batch jobs
CATALOG_BATCH_SHARE = Decimal("0.5")  # a catalog model's default batch price: half its online price
# ISO 4217 exponents that are not 2; every other currency has cents.
_EXPONENTS = {"jpy": 0, "krw": 0, "vnd": 0, "clp": 0, "isk": 0, "bhd": 3, "kwd": 3, "omr": 3, "tnd": 3}


@dataclass(frozen=True)
class Price:
    """A model's price per 1M input and per 1M output tokens in one tier, in force from ``effective_from``:
    ``online`` for requests, ``batch`` for the lines of batch jobs."""

    model: str
    input_per_million: Decimal
    output_per_million: Decimal
    currency: str
    effective_from: datetime = EPOCH
    tier: str = "online"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """The exact cost of a request at this price."""
        return cost_of(prompt_tokens, completion_tokens, self.input_per_million, self.output_per_million)


@dataclass(frozen=True)
class InstancePrice:
    """A model's price per started minute of one instance type, in force from ``effective_from``."""

    model: str
    instance_type: str
    per_minute: Decimal
    currency: str
    effective_from: datetime = EPOCH

    def cost(self, minutes: int) -> Decimal:
        """The exact cost of ``minutes`` instance-minutes at this price."""
        return minutes * self.per_minute


def cost_of(prompt_tokens: int, completion_tokens: int, input_per_million: Decimal,
            output_per_million: Decimal) -> Decimal:
    """Exact cost; Decimal division by 10**6 of a finite decimal never rounds at 28+ digits of precision."""
    return (prompt_tokens * input_per_million + completion_tokens * output_per_million) / MILLION


def to_minor_units(amount: Decimal, currency: str) -> int:
    """THE rounding rule: ROUND_HALF_UP to the currency's minor unit (cents for USD), once per line."""
    exponent = _EXPONENTS.get(currency.lower(), 2)
    return int((amount * (Decimal(10) ** exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_amount(raw: str | int | Decimal, field: str) -> Decimal:
    """A non-negative exact decimal from an API or CLI string; floats are refused because they are inexact."""
    if isinstance(raw, (float, bool)):
        raise InvalidRequest(f"{field} must be a decimal string, not a float", param=field)
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise InvalidRequest(f"{field} is not a decimal number: {raw!r}", param=field) from exc
    if not value.is_finite() or value < 0:
        raise InvalidRequest(f"{field} must be a finite, non-negative number", param=field)
    return value


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime (SQLite hands back naive datetimes, which are UTC here by convention)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def next_period(period: str) -> str:
    """The month after ``period``."""
    year, month = (int(part) for part in period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def check_period(period: str) -> str:
    """Validate 'YYYY-MM'."""
    try:
        datetime.strptime(period, "%Y-%m")
    except ValueError as exc:
        raise InvalidRequest(f"period must look like 2026-11, not {period!r}", param="period") from exc
    return period


def format_decimal(value: Decimal) -> str:
    """A decimal as a plain string without exponent or trailing zeros ('0.00000015', '12')."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
