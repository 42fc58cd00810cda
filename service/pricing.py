"""Price quotes for the request path: the price book, kept fresh while in use so admission costs no query.

Quotes only size budget reservations; the ledger prices every event itself with the entry in force at the
request's start, so a cached quote can never make a bill wrong. A batch line is quoted at its model's batch
price (the online price where the book has no batch entry, as in the ledger).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from billing.money import BATCH, CATALOG_BATCH_SHARE, ONLINE, Price
from meterway.errors import NotFound
from service.warm_cache import WarmCache

if TYPE_CHECKING:
    from models.catalog import ModelSpec

FRESH_S, REFRESH_S, ACTIVE_S = 5.0, 2.5, 300.0
_Key = tuple[str, str]  # (model id, tier)


class BookQuotes:
    """``PriceQuotes`` over billing's ``PriceBook``; a model without a price falls back to its catalog price
    (online), or half of it (batch)."""

    def __init__(self, book: Any) -> None:
        self._book = book
        self._specs: dict[str, ModelSpec] = {}
        self._quotes: WarmCache[_Key, Price] = WarmCache(self._read, self._read_many, fresh_s=FRESH_S,
                                                          refresh_s=REFRESH_S, active_s=ACTIVE_S, name="prices")

    async def quote(self, model: ModelSpec, at: datetime, *, tier: str = ONLINE) -> Price:
        self._specs[model.id] = model
        return await self._quotes.get((model.id, tier))

    def start(self) -> None:
        self._quotes.start()

    async def close(self) -> None:
        await self._quotes.close()

    async def _read(self, key: _Key) -> Price:
        model_id, tier = key
        model = self._specs[model_id]
        try:
            price = await self._book.quote(model_id, datetime.now(UTC), tier=tier)
        except NotFound:
            share = CATALOG_BATCH_SHARE if tier == BATCH else 1
            return Price(model_id, model.input_price_per_million * share, model.output_price_per_million * share,
                         self._book.currency, tier=tier)
        return price

    async def _read_many(self, keys: list[_Key]) -> dict[_Key, Price]:
        return {key: await self._read(key) for key in keys}
