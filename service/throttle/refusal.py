"""Explain a refused admission: which limit, in OpenAI's words, and how long to wait.

Codes (``error.code`` in the body; ``error.type`` is ``requests`` or ``tokens`` as with OpenAI):

=====================  ===========================  ======  =============================================
limit                  code                         status  Retry-After
=====================  ===========================  ======  =============================================
requests per minute    ``rate_limit_exceeded``      429     until one more request fits the window
tokens per minute      ``tokens_per_min``           429     until the reservation fits the window
requests per day       ``requests_per_day``         429     until one more request fits the day window
max concurrency        ``concurrency_limit_exceeded`` 429   1 s (slots free when requests end)
budget                 ``insufficient_quota``       402     until the budget period ends
=====================  ===========================  ======  =============================================

When several limits refuse at once, the code is the most lasting one's (budget, day, minute, concurrency)
and Retry-After the longest wait. A request larger than a limit can ever admit (more tokens than the TPM,
a price above the whole budget) gets no Retry-After and ``x-should-retry: false``, which the ``openai``
client honours instead of retrying in vain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterway.errors import BudgetExhausted, MeterwayError, RateLimited
from service.throttle.headers import format_reset
from service.throttle.policy import units_to_money
from service.throttle.store import fits
from service.throttle.windows import wait_to_fit

if TYPE_CHECKING:
    from service.throttle.plan import Planned
    from service.throttle.policy import Subject

#: Slots free whenever a running request ends; this is a polite polling interval, not a promise.
CONCURRENCY_RETRY_S = 1.0

_CODES = {"rpm": "rate_limit_exceeded", "tpm": "tokens_per_min", "rpd": "requests_per_day",
          "max_concurrency": "concurrency_limit_exceeded", "budget": "insufficient_quota"}
_LABELS = {"rpm": "requests per minute (RPM)", "tpm": "tokens per minute (TPM)",
           "rpd": "requests per day (RPD)", "max_concurrency": "concurrent requests", "budget": "budget"}


def refusal(planned: list[Planned], counts: tuple[tuple[int, int], ...], subject: Subject,
            headers: dict[str, str]) -> MeterwayError:
    """The error for a refused admission, carrying the rate-limit headers and ``retry_after``."""
    pairs = zip(planned, counts, strict=True)
    failing = [(item, count) for item, count in pairs if not fits(item.check, count)]
    if not failing:  # the store refused, yet every counter fits now: it changed between the two looks
        failing = [(planned[0], counts[0])]
    waits = [_wait(item, count) for item, count in failing]
    first, count = failing[0]
    retry_after = None if any(wait is None for wait in waits) else max(w for w in waits if w is not None)
    message = _message(first, count, subject, retry_after)
    extra = {} if retry_after is not None else {"x-should-retry": "false"}
    kind = BudgetExhausted if first.rule.name == "budget" else RateLimited
    error = kind(message, code=_CODES[first.rule.name], retry_after=retry_after, headers={**headers, **extra})
    if first.rule.counts_tokens:
        error.type = "tokens"
    return error


def _wait(item: Planned, count: tuple[int, int]) -> float | None:
    check = item.check
    if item.window is not None:
        return wait_to_fit(check.limit, check.amount, item.window, *count)
    if check.kind == "lease":
        return CONCURRENCY_RETRY_S if check.limit > 0 else None
    return item.period_left_s if check.amount <= check.limit else None


def _message(item: Planned, count: tuple[int, int], subject: Subject, retry_after: float | None) -> str:
    rule, check = item.rule, item.check
    key, ceiling = subject.kinds
    owner = f"{key} {subject.key_id}" if rule.scope == "key" else f"{ceiling} {subject.tenant_id}"
    if rule.name == "budget":
        text = (f"Budget exhausted for {owner}: {units_to_money(check.limit)} per {rule.period}, "
                f"{units_to_money(count[0])} spent or reserved, this request needs up to "
                f"{units_to_money(check.amount)}.")
    elif rule.name == "max_concurrency":
        text = f"Too many concurrent requests for {owner}: Limit {check.limit}, In flight {count[0]}."
    else:
        used = round(count[1] * check.weight + count[0])
        text = (f"Rate limit reached for {_LABELS[rule.name]} on {owner}: Limit {check.limit}, "
                f"Used {used}, Requested {check.amount}.")
    if retry_after is None:
        return f"{text} This request can never fit this limit; reduce it or raise the limit."
    return f"{text} Please try again in {format_reset(retry_after)}."
