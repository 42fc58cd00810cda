"""Price quotes for the request path: the price book, cached briefly so admission costs no query.

Quotes only size budget reservations; the ledger prices every event itself with the entry in force at the
request's start, so a cached quote can never make a bill wrong.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from service.errors import NotFound
from service.inference import Prices

if TYPE_CHECKING:
    from datetime import datetime

    from models.catalog import ModelSpec

_TTL_S = 5.0


class BookQuotes:
    """``PriceQuotes`` over billing's ``PriceBook``; a model without a price falls back to its catalog price."""

    def __init__(self, book: Any) -> None:
        self._book = book
        self._cache: dict[str, tuple[float, Prices]] = {}

    async def quote(self, model: ModelSpec, at: datetime) -> Prices:
        cached = self._cache.get(model.id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            price = await self._book.quote(model.id, at)
            prices = Prices(price.input_per_million, price.output_per_million)
        except NotFound:
            prices = Prices(model.input_price_per_million, model.output_price_per_million)
        self._cache[model.id] = (time.monotonic() + _TTL_S, prices)
        return prices
