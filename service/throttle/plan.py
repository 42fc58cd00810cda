"""Turn one request into the counters it must fit: a :class:`Planned` check per rule of the key and tenant.

Storage keys share the tenant as a Redis Cluster hash tag (``{tenant}``), so that the one script that checks
a key together with its tenant ceiling touches a single slot::

    <prefix>:{<tenant>}:key:<key id>:rpm:<window index>        sliding-window counters (rpm, tpm, rpd)
    <prefix>:{<tenant>}:key:<key id>:conc                      concurrency leases
    <prefix>:{<tenant>}:key:<key id>:budget:day:2026-11-25     money reserved or spent in the period
    <prefix>:{<tenant>}:tenant:...                             the same for the tenant ceiling
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.throttle.headers import WindowState
from service.throttle.store import Check
from service.throttle.windows import Window, budget_period, remaining, until_reset

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service.throttle.policy import Rule, Subject

#: A budget counter outlives its period by a day, so that late settlements still find it.
BUDGET_GRACE_S = 86_400


@dataclass(frozen=True)
class Planned:
    """A rule, the counter check it becomes at this moment, and what is needed to explain the outcome."""

    rule: Rule
    check: Check
    window: Window | None = None
    period_left_s: float = 0.0

    def state(self, count: tuple[int, int], reserved: bool) -> WindowState | None:
        """The window as a client sees it (for the headers); ``None`` for leases and budgets."""
        if self.window is None:
            return None
        current, previous = count
        if reserved:
            current += self.check.amount
        dimension = "tokens" if self.rule.counts_tokens else "requests"
        left = remaining(self.rule.limit, self.window, current, previous)
        return WindowState(dimension, self.rule.limit, left, until_reset(self.window, current, previous))


def plan(rules: Iterable[Rule], subject: Subject, *, prefix: str, now: float, tokens: int, cost_units: int,
         lease_ttl_s: int) -> list[Planned]:
    """The checks of one admission, in the rules' order."""
    planned: list[Planned] = []
    for rule in rules:
        base = _base(prefix, subject, rule)
        if rule.window_s is not None:
            window = Window.at(now, rule.window_s)
            amount = tokens if rule.counts_tokens else 1
            keys = (f"{base}:{rule.name}:{window.index}", f"{base}:{rule.name}:{window.index - 1}")
            check = Check("window", keys, rule.limit, amount, window.previous_weight, 2 * rule.window_s)
            planned.append(Planned(rule, check, window))
        elif rule.name == "max_concurrency":
            planned.append(Planned(rule, Check("lease", (f"{base}:conc",), rule.limit, 1, ttl_s=lease_ttl_s)))
        else:
            period = rule.period or "month"
            period_id, left = budget_period(now, period)
            key = f"{base}:budget:{period}:{period_id}"
            ttl = math.ceil(left) + BUDGET_GRACE_S
            planned.append(Planned(rule, Check("budget", (key,), rule.limit, cost_units, ttl_s=ttl),
                                   period_left_s=left))
    return planned


def _base(prefix: str, subject: Subject, rule: Rule) -> str:
    owner = f"key:{subject.key_id}" if rule.scope == "key" else "tenant"
    return f"{prefix}:{{{subject.tenant_id}}}:{owner}"
