"""Price quotes for the request path: the price book, kept fresh while in use so admission costs no query.

Quotes only size budget reservations; the ledger prices every event itself with the entry in force at the
request's start, so a cached quote can never make a bill wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from billing.money import Price
from meterway.errors import NotFound
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from models.catalog import ModelSpec

FRESH_S, REFRESH_S, ACTIVE_S = 5.0, 2.5, 300.0


class BookQuotes:
    """``PriceQuotes`` over billing's ``PriceBook``; a model without a price falls back to its catalog price."""

    def __init__(self, book: Any) -> None:
        self._book = book
        self._specs: dict[str, ModelSpec] = {}
        self._quotes: WarmCache[str, Price] = WarmCache(self._read, self._read_many, fresh_s=FRESH_S,
                                                         refresh_s=REFRESH_S, active_s=ACTIVE_S, name="prices")

    async def quote(self, model: ModelSpec, at: datetime) -> Price:
        self._specs[model.id] = model
        return await self._quotes.get(model.id)

    def start(self) -> None:
        self._quotes.start()

    async def close(self) -> None:
        await self._quotes.close()

    async def _read(self, model_id: str) -> Price:
        model = self._specs[model_id]
        try:
            price = await self._book.quote(model_id, datetime.now(UTC))
        except NotFound:
            return Price(model_id, model.input_price_per_million, model.output_price_per_million,
                         self._book.currency)
        return price

    async def _read_many(self, model_ids: list[str]) -> dict[str, Price]:
        return {model_id: await self._read(model_id) for model_id in model_ids}
