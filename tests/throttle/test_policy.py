"""Pure logic of the throttle: limits from rows, windows, budget periods, reset format, error classes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from meterway.errors import BudgetExhausted, RateLimited
from meterway.settings import LimitSettings
from service.throttle import KeyLimits, format_reset
from service.throttle.policy import money_to_units
from service.throttle.windows import Window, budget_period, wait_to_fit

from .conftest import T0


@dataclass
class Row:
    """Stands in for ``ApiKeyRow`` / ``TenantRow``: only the attributes the throttle reads."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    max_concurrency: int | None = None
    budget_amount: Decimal | None = None
    budget_period: str | None = None


def test_key_limits_take_the_row_and_fill_unset_fields_from_settings() -> None:
    defaults = LimitSettings(default_rpm=60, default_tpm=10_000, default_max_concurrency=4)
    limits = KeyLimits.from_row(Row(rpm=5, budget_amount=Decimal("2.50"), budget_period="day"),
                                defaults=defaults, tenant_row=Row(tpm=50_000))
    assert (limits.rpm, limits.tpm, limits.max_concurrency, limits.rpd) == (5, 10_000, 4, None)
    assert limits.budget_amount == Decimal("2.50") and limits.budget_period == "day"
    assert limits.tenant == KeyLimits(tpm=50_000)
    names = [(rule.name, rule.scope) for rule in limits.rules()]
    assert names == [("budget", "key"), ("rpm", "key"), ("tpm", "key"), ("tpm", "tenant"),
                     ("max_concurrency", "key")]


def test_zero_defaults_mean_unlimited() -> None:
    limits = KeyLimits.from_row(Row(), defaults=LimitSettings())
    assert limits.unlimited
    assert not KeyLimits(tenant=KeyLimits(rpm=1)).unlimited


@pytest.mark.parametrize("bad", [{"rpm": -1}, {"budget_amount": Decimal(1), "budget_period": "week"},
                                 {"budget_amount": 1.5}])
def test_invalid_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KeyLimits(**bad)  # type: ignore[arg-type]


def test_money_rounds_against_overspending() -> None:
    assert money_to_units(Decimal("0.0000000001"), round_up=True) == 1
    assert money_to_units(Decimal("0.0000000019"), round_up=False) == 1
    assert money_to_units(Decimal("1.23"), round_up=True) == 1_230_000_000


@pytest.mark.parametrize(("seconds", "text"), [(0.02, "20ms"), (0, "0ms"), (1, "1s"), (1.5, "1.5s"),
                                               (360, "6m0s"), (61.25, "1m1.25s"), (3600, "1h0m0s")])
def test_resets_read_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_a_request_waits_for_the_previous_window_to_decay() -> None:
    window = Window.at(T0 + 15, 60)  # a quarter into the window: the previous one weighs 0.75
    assert window.previous_weight == 0.75
    assert wait_to_fit(10, 1, window, 0, 10) == 0.0  # 7.5 + 1 fits already
    # 10 used before, none now, at the window's start: one more fits once that share drops to 9, at 6 s.
    assert wait_to_fit(10, 1, Window.at(T0, 60), 0, 10) == pytest.approx(6.0)
    # The current window is full: wait for the next one, and for today's count to decay there.
    assert wait_to_fit(10, 1, window, 10, 0) == pytest.approx(45 + 6)
    assert wait_to_fit(10, 11, window, 0, 0) is None


def test_budget_periods_are_utc_calendar_days_and_months() -> None:
    assert budget_period(T0, "day") == ("2026-11-25", 14 * 3600)
    period, left = budget_period(T0, "month")
    assert period == "2026-11" and left == (5 * 24 + 14) * 3600
    assert budget_period(T0 + 36 * 86_400, "month")[0] == "2026-12"
    assert budget_period(T0 + 37 * 86_400, "month")[0] == "2027-01"


def test_budget_exhaustion_is_a_402_that_the_openai_client_does_not_retry() -> None:
    error = BudgetExhausted("spent", code="insufficient_quota")
    assert (error.status, error.code, error.type) == (402, "insufficient_quota", "insufficient_quota")
    assert RateLimited("busy").status == 429


def test_rate_rules_are_limits_items() -> None:
    rules = {rule.name: rule for rule in KeyLimits(rpm=60, tpm=1000, rpd=5, max_concurrency=2).rules()}
    assert str(rules["rpm"].item) == "60 per 1 minute" and rules["rpm"].window_s == 60
    assert str(rules["rpd"].item) == "5 per 1 day" and rules["rpd"].window_s == 86_400
    assert rules["max_concurrency"].item is None and rules["max_concurrency"].window_s is None
