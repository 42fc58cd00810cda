"""The effective-dated price book: per model, price per 1M input and output tokens from a start time on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from billing.money import EPOCH, Price, as_utc
from billing.tables import PriceRow
from meterway.errors import Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable
    from decimal import Decimal

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from models.catalog import ModelSpec


def price_from_row(row: PriceRow) -> Price:
    """The price an ORM row holds."""
    return Price(row.model, row.input_per_million, row.output_per_million, row.currency,
                 as_utc(row.effective_from))


class PriceTable:
    """All prices of some models, loaded once; answers 'which price was in force at t' without SQL."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for price in sorted(prices, key=lambda p: p.effective_from):
            self._by_model.setdefault(price.model, []).append(price)

    def at(self, model: str, moment: datetime) -> Price | None:
        """The latest price of ``model`` whose start is at or before ``moment``."""
        moment = as_utc(moment)
        found = None
        for price in self._by_model.get(model, []):
            if price.effective_from > moment:
                break
            found = price
        return found


class PriceBook:
    """Reads and appends prices. An entry is never edited: a change is a new entry with a later start."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], currency: str) -> None:
        self._sessions = sessions
        self.currency = currency

    async def quote(self, model: str, at: datetime | None = None) -> Price:
        """The price in force for ``model`` at ``at`` (now by default); for budget reservations."""
        at = at or datetime.now(UTC)
        async with self._sessions() as session:
            row = (await session.execute(
                select(PriceRow).where(PriceRow.model == model, PriceRow.effective_from <= at)
                .order_by(PriceRow.effective_from.desc()).limit(1))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no price for model '{model}' at {at.isoformat()}", param="model",
                           code="no_price")
        return price_from_row(row)

    async def table(self, models: Iterable[str]) -> PriceTable:
        """Every price of ``models``, for pricing a batch of events in one query."""
        async with self._sessions() as session:
            rows = (await session.execute(select(PriceRow).where(PriceRow.model.in_(set(models))))).scalars()
            return PriceTable(price_from_row(row) for row in rows)

    async def list(self, model: str | None = None) -> list[Price]:
        """All entries (of one model, or of all), oldest first."""
        query = select(PriceRow).order_by(PriceRow.model, PriceRow.effective_from)
        if model:
            query = query.where(PriceRow.model == model)
        async with self._sessions() as session:
            return [price_from_row(row) for row in (await session.execute(query)).scalars()]

    async def set_price(self, model: str, input_per_million: Decimal, output_per_million: Decimal,
                        effective_from: datetime | None = None) -> Price:
        """Append a price for ``model`` from ``effective_from`` (now by default) on."""
        if not model:
            raise InvalidRequest("model is required", param="model")
        start = as_utc(effective_from) if effective_from else datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            clash = await session.scalar(select(PriceRow.id).where(
                PriceRow.model == model, PriceRow.effective_from == start))
            if clash is not None:
                raise Conflict(f"a price for '{model}' already starts at {start.isoformat()}",
                               param="effective_from", code="price_exists")
            session.add(_row(model, input_per_million, output_per_million, self.currency, start))
        return Price(model, input_per_million, output_per_million, self.currency, start)

    async def seed(self, specs: Iterable[ModelSpec]) -> int:
        """Give each catalog model without any price its catalog default, effective from the epoch."""
        specs = list(specs)
        async with self._sessions() as session, session.begin():
            priced = set((await session.execute(select(PriceRow.model).distinct())).scalars())
            missing = [s for s in specs if s.id not in priced]
            for spec in missing:
                session.add(_row(spec.id, spec.input_price_per_million, spec.output_price_per_million,
                                 self.currency, EPOCH))
        return len(missing)


def _row(model: str, input_pm: Decimal, output_pm: Decimal, currency: str, start: datetime) -> PriceRow:
    return PriceRow(model=model, effective_from=start, input_per_million=input_pm,
                    output_per_million=output_pm, currency=currency, created_at=datetime.now(UTC))
