"""Request-body building blocks that say in the OpenAPI document exactly what the server accepts.

A management body refuses fields it does not declare, like the OpenAI ones; names, limits and money carry
the bounds the database and the validators apply, so that a request the document calls valid is accepted.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

INT32_MAX = 2_147_483_647

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
Name = Annotated[str, Meta(pattern=NAME_PATTERN,
                           description="1-64 letters, digits, '-', '_' or '.'")]
LabelText = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._ -]{1,64}$",
                                description="1-64 letters, digits, spaces, '-', '_' or '.'")]
Limit = Annotated[int, Meta(ge=1, le=INT32_MAX)]
BudgetAmount = Annotated[str, Meta(pattern=r"^[0-9]{1,14}(\.[0-9]{1,6})?$",
                                   description="a non-negative decimal string, up to 6 decimals")]
PricePerMillion = Annotated[str, Meta(pattern=r"^[0-9]{1,20}(\.[0-9]{1,18})?$",
                                      description="a non-negative decimal string (money never travels as a float)")]
BudgetPeriod = Literal["day", "month"]
ModelId = Annotated[str, Meta(min_length=1, max_length=128)]
StripeCustomer = Annotated[str, Meta(pattern=r"^cus_[A-Za-z0-9]{1,251}$", description="a Stripe customer id")]
MOMENT_FORMS = [{"pattern": "^[0-9]{1,11}$"}, {"format": "date"}, {"format": "date-time"}]
Moment = Annotated[str, Meta(
    min_length=1,
    description="unix seconds, an ISO date (YYYY-MM-DD) or an ISO datetime (UTC unless it names an offset)",
    extra_json_schema={"anyOf": MOMENT_FORMS})]


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A request body: a field it does not declare is refused (``Unrecognized request argument``)."""
