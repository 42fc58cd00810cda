"""Per-key throttling and budgets that hold across gateway replicas.

The request path builds a :class:`Throttle` once (``build_throttle(settings)`` in ``create_app``) and,
for each request, before the model runs::

    limits = KeyLimits.from_row(key_row, defaults=settings.limits, tenant_row=tenant_row)
    admission = await throttle.admit(Subject(key_row.id, key_row.tenant), limits,
                                     tokens=prompt_tokens + max_tokens, cost=price_of_that)
    ...  # response headers: admission.headers
    await admission.settle(tokens_used, cost_used)   # or admission.release() on failure; both idempotent

Refusals raise ``RateLimited`` (429) or ``BudgetExhausted`` (402), with ``headers`` and ``retry_after``
(see :mod:`service.throttle.refusal` for the codes).

Built on the ``limits`` library, and where it stops: rate rules are its ``RateLimitItem`` s (per minute, per
day; ``Rule.item``) counted by its sliding-window-counter rule; the Redis connection is opened by its
``storage_from_string``. Its strategies, however, ``hit`` one limit at a time, so a request checked against
RPM, TPM, RPD, concurrency and a budget would need one call per limit, and a limit that passes while a later
one refuses would stay consumed. Reserving tokens and money and giving back the unused part later is outside
its model too. So a request's counters are checked and reserved all at once by our own Lua script
(``lua/admit.lua``): atomic, one round trip, for the key and its tenant ceiling together; settlements ride
along with the tenant's next admission. The in-memory store keeps plain dicts rather than its
``MemoryStorage``, whose per-call cost was larger than the rest of admission (see ``memory.py``).

Modules: ``policy`` (limits and rules), ``windows`` (time arithmetic), ``plan`` (rules → counter checks and
storage keys), ``store`` (the store Protocol and registry), ``memory`` / ``redis_store`` (the stores),
``headers`` (OpenAI's ``x-ratelimit-*``), ``refusal`` (errors), ``admission`` (settle / release),
``throttle`` (admit, ``build_throttle``).
"""

from service.throttle.admission import Admission
from service.throttle.headers import format_reset
from service.throttle.policy import KeyLimits, Subject
from service.throttle.store import ReservationStore
from service.throttle.stores import STORES, open_store
from service.throttle.throttle import LimitThrottle, Throttle, build_throttle

__all__ = [
    "STORES",
    "Admission",
    "KeyLimits",
    "LimitThrottle",
    "ReservationStore",
    "Subject",
    "Throttle",
    "build_throttle",
    "format_reset",
    "open_store",
]
