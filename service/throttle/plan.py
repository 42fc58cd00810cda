"""Turn a key's rules into the counters each of its requests must fit.

A :class:`KeyPlan` holds what stays fixed for a key while no window and no budget period turns over: each
rule's storage keys, limit and expiry. The throttle keeps one per key and builds a new one when ``now``
leaves its span, so that a request only adds what is its own (``KeyPlan.checks``: the amounts, the previous
windows' weights).

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
from typing import TYPE_CHECKING, NamedTuple

from service.throttle.headers import WindowState
from service.throttle.store import Check
from service.throttle.windows import Window, budget_period

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service.throttle.policy import Rule, Subject
    from service.throttle.store import CheckKind

#: A budget counter outlives its period by a day, so that late settlements still find it.
BUDGET_GRACE_S = 86_400


class RulePlan(NamedTuple):
    """One rule's counter while its key plan holds. ``length``: the window (s); ``period_end``: budgets'."""

    rule: Rule
    kind: CheckKind
    keys: tuple[str, ...]
    length: int = 0
    ttl_s: int = 0
    period_end: float = 0.0


@dataclass(frozen=True)
class Planned:
    """A rule, the counter check it became for one request, and what is needed to explain a refusal."""

    rule: Rule
    check: Check
    window: Window | None = None
    period_left_s: float = 0.0


class KeyPlan:
    """A key's checks while its windows (``indexes``: length → window index) and budget periods hold.

    Admission is on every request's path, so what only depends on the plan is worked out here once: the
    moment the plan stops holding (``end``: the first window boundary or period end) and where each window
    began, so that a request costs a float comparison and one weight per window length.
    """

    def __init__(self, items: tuple[RulePlan, ...], start: float, indexes: dict[int, int]) -> None:
        self.items = items
        self.start = start
        self.indexes = indexes
        self._began = {length: index * length for length, index in indexes.items()}
        ends = [item.period_end for item in items if item.kind == "budget"]
        ends += [began + length for length, began in self._began.items()]
        self.end = min(ends, default=math.inf)
        self.token_keys = tuple(item.keys[0] for item in items if item.rule.counts_tokens)
        self.budget_keys = tuple(item.keys[0] for item in items if item.kind == "budget")
        self.lease_keys = tuple(item.keys[0] for item in items if item.kind == "lease")

    def windows(self, now: float) -> dict[int, Window]:
        """Where ``now`` falls in each window length the rules use (within the plan's span)."""
        return {length: Window(length, self.indexes[length], now - began) for length, began in self._began.items()}

    def covers(self, now: float) -> bool:
        """Whether the plan still holds at ``now``: same windows, same budget periods."""
        return self.start <= now < self.end

    def checks(self, now: float, tokens: int, cost_units: int) -> list[Check]:
        """The counter checks of one request, in the rules' order."""
        weights = {length: (began + length - now) / length for length, began in self._began.items()}
        checks: list[Check] = []
        for item in self.items:
            limit = item.rule.limit
            if item.kind == "window":
                amount = tokens if item.rule.counts_tokens else 1
                checks.append(Check("window", item.keys, limit, amount, weights[item.length], item.ttl_s))
            elif item.kind == "lease":
                checks.append(Check("lease", item.keys, limit, 1, 0.0, item.ttl_s))
            else:
                ttl = math.ceil(item.period_end - now) + BUDGET_GRACE_S
                checks.append(Check("budget", item.keys, limit, cost_units, 0.0, ttl))
        return checks

    def states(self, now: float, checks: list[Check], counts: tuple[tuple[int, int], ...],
               reserved: bool) -> list[WindowState]:
        """The rate windows as a client sees them after (or instead of) this request, for the headers.

        Remaining: the whole units that still fit (``previous * weight + current`` against the limit).
        Reset: seconds until the window is back to its full limit if nothing more is admitted.
        """
        states: list[WindowState] = []
        for item, check, (current, previous) in zip(self.items, checks, counts, strict=True):
            if item.kind != "window":
                continue
            if reserved:
                current += check.amount
            length = item.length
            left = self._began[length] + length - now  # until this fixed window ends
            used = previous * check.weight + current
            reset = left + length if current > 0 else (left if previous > 0 else 0.0)
            states.append(WindowState("tokens" if item.rule.counts_tokens else "requests", check.limit,
                                      max(0, math.floor(check.limit - used + 1e-9)), reset))
        return states

    def planned(self, now: float, checks: list[Check]) -> list[Planned]:
        """Each rule with its check, to explain a refusal."""
        windows = self.windows(now)
        return [Planned(item.rule, check, windows.get(item.length) if item.kind == "window" else None,
                        item.period_end - now if item.kind == "budget" else 0.0)
                for item, check in zip(self.items, checks, strict=True)]


def plan_key(rules: Iterable[Rule], subject: Subject, *, prefix: str, now: float, lease_ttl_s: int) -> KeyPlan:
    """The plan of one key (and its tenant) for the span of time around ``now``."""
    items: list[RulePlan] = []
    indexes: dict[int, int] = {}
    for rule in rules:
        base = _base(prefix, subject, rule)
        if rule.window_s is not None:
            window = Window.at(now, rule.window_s)
            keys = (f"{base}:{rule.name}:{window.index}", f"{base}:{rule.name}:{window.index - 1}")
            items.append(RulePlan(rule, "window", keys, length=rule.window_s, ttl_s=2 * rule.window_s))
            indexes[rule.window_s] = window.index
        elif rule.name == "max_concurrency":
            items.append(RulePlan(rule, "lease", (f"{base}:conc",), ttl_s=lease_ttl_s))
        else:
            period = rule.period or "month"
            period_id, left = budget_period(now, period)
            budget_key = f"{base}:budget:{period}:{period_id}"
            # Periods end at whole seconds (UTC midnight): rounding undoes the float error of now + left.
            items.append(RulePlan(rule, "budget", (budget_key,), period_end=float(round(now + left))))
    return KeyPlan(tuple(items), now, indexes)


def _base(prefix: str, subject: Subject, rule: Rule) -> str:
    key, ceiling = subject.kinds
    owner = f"{key}:{subject.key_id}" if rule.scope == "key" else ceiling
    return f"{prefix}:{{{subject.tenant_id}}}:{owner}"
