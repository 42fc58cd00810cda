"""What a key may use: its own limits and its tenant's ceiling, as a list of rules.

A key's limits come from its row (``service.tables.ApiKeyRow``), with ``LimitSettings`` defaults for the
fields it leaves unset; its tenant's row (``TenantRow``) adds a ceiling that all of the tenant's keys share.
``None`` means unlimited. ``KeyLimits.rules()`` lists every limit as a :class:`Rule` in the order refusals
are reported (the most lasting first: a spent budget says more than a busy minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute

if TYPE_CHECKING:
    from collections.abc import Mapping

    from meterway.settings import LimitSettings

Scope = Literal["key", "tenant"]
RuleName = Literal["budget", "rpd", "rpm", "tpm", "max_concurrency"]
BUDGET_PERIODS = ("day", "month")

#: Budgets are counted in integer nano-units of the currency: exact for any price with up to nine
#: decimals, and (as Lua numbers are doubles) exact up to about 9 million currency units per period.
UNITS_PER_CURRENCY = Decimal(1_000_000_000)

#: The window of each rate rule, as the ``limits`` library defines it.
_WINDOWS: Mapping[str, type[RateLimitItem]] = MappingProxyType({
    "rpm": RateLimitItemPerMinute, "tpm": RateLimitItemPerMinute, "rpd": RateLimitItemPerDay})


def money_to_units(amount: Decimal, *, round_up: bool) -> int:
    """Currency to integer nano-units; costs round up and budgets down, so rounding never overspends."""
    scaled = (amount * UNITS_PER_CURRENCY).to_integral_value(ROUND_CEILING if round_up else ROUND_FLOOR)
    return int(scaled)


def units_to_money(units: int) -> Decimal:
    """Nano-units back to currency (for messages and reports)."""
    return (Decimal(units) / UNITS_PER_CURRENCY).normalize()


@dataclass(frozen=True)
class Subject:
    """Who is asking: the key and the tenant that owns it (the tenant names the shared ceiling).

    ``kinds`` names both in messages and storage keys: a deployment is limited like a key, under its
    endpoint's ceiling (``("deployment", "endpoint")``), in counters of its own.
    """

    key_id: str
    tenant_id: str
    kinds: tuple[str, str] = ("key", "tenant")


@dataclass(frozen=True)
class Rule:
    """One limit of one scope: ``limit`` is in requests, tokens or nano-units of currency."""

    name: RuleName
    scope: Scope
    limit: int
    period: str | None = None

    @property
    def item(self) -> RateLimitItem | None:
        """The rule as a ``limits`` rate-limit item (e.g. ``60 per 1 minute``); ``None`` if not a rate."""
        kind = _WINDOWS.get(self.name)
        return None if kind is None else kind(self.limit, namespace=f"{self.scope}:{self.name}")

    @property
    def window_s(self) -> int | None:
        """Length of the sliding window for rate rules; ``None`` for concurrency and budgets."""
        kind = _WINDOWS.get(self.name)
        return None if kind is None else kind.GRANULARITY.seconds

    @property
    def counts_tokens(self) -> bool:
        return self.name == "tpm"


@dataclass(frozen=True)
class KeyLimits:
    """The limits of a key (or, as ``tenant``, the ceiling over it). ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    max_concurrency: int | None = None
    budget_amount: Decimal | None = None
    budget_period: str | None = None
    tenant: KeyLimits | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rpd", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.budget_amount is not None:
            if not isinstance(self.budget_amount, Decimal) or self.budget_amount < 0:
                raise ValueError(f"budget_amount must be a non-negative Decimal, got {self.budget_amount!r}")
            if (self.budget_period or "month") not in BUDGET_PERIODS:
                raise ValueError(f"budget_period must be one of {BUDGET_PERIODS}, got {self.budget_period!r}")

    @classmethod
    def from_row(cls, row: Any, *, defaults: LimitSettings | None = None,
                 tenant_row: Any | None = None) -> KeyLimits:
        """Limits of a key row (any object with the row's attributes), defaults filling its unset fields.

        ``tenant_row`` adds the tenant's ceiling; tenants take no defaults (their keys already do).
        """
        def pick(name: str, default: int = 0) -> int | None:
            value = getattr(row, name, None)
            if value is None and default > 0:
                return default
            return value

        amount = getattr(row, "budget_amount", None)
        return cls(
            rpm=pick("rpm", defaults.default_rpm if defaults else 0),
            tpm=pick("tpm", defaults.default_tpm if defaults else 0),
            rpd=pick("rpd"),
            max_concurrency=pick("max_concurrency", defaults.default_max_concurrency if defaults else 0),
            budget_amount=None if amount is None else Decimal(amount),
            budget_period=getattr(row, "budget_period", None),
            tenant=None if tenant_row is None else cls.from_row(tenant_row),
        )

    def budgets_only(self) -> KeyLimits:
        """These limits' budgets (the key's and its tenant's) without their rates: a batch line queues
        instead of being throttled, but spends the same money."""
        tenant = self.tenant.budgets_only() if self.tenant is not None else None
        return KeyLimits(budget_amount=self.budget_amount, budget_period=self.budget_period, tenant=tenant)

    @property
    def unlimited(self) -> bool:
        """True when neither the key nor its tenant sets any limit: admission needs no storage at all."""
        return not self._rules

    def rules(self) -> tuple[Rule, ...]:
        """Every limit of the key and of its tenant, in the order refusals are reported."""
        return self._rules

    @cached_property
    def _rules(self) -> tuple[Rule, ...]:
        # Cached: the gateway keeps a key's limits between requests, and admission is on the hot path.
        own = self._own_rules("key")
        ceiling = self.tenant._own_rules("tenant") if self.tenant else []
        order = ("budget", "rpd", "rpm", "tpm", "max_concurrency")
        return tuple(sorted(own + ceiling, key=lambda rule: (order.index(rule.name), rule.scope != "key")))

    def _own_rules(self, scope: Scope) -> list[Rule]:
        rules = [Rule(name, scope, value) for name in ("rpd", "rpm", "tpm", "max_concurrency")  # type: ignore[misc]
                 if (value := getattr(self, name)) is not None]
        if self.budget_amount is not None:
            period = self.budget_period or "month"
            rules.append(Rule("budget", scope, money_to_units(self.budget_amount, round_up=False), period))
        return rules
