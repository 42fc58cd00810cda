"""The effective-dated price books: per (model, tier), price per 1M input and output tokens from a start time
on, and per (model, instance type), price per instance-minute from a start time on.

Both books follow one rule: an entry is never edited, a change is a new entry with a later start, and the
entry in force at t is the latest one whose start is at or before t. A fine-tune without its own entry uses its
base model's. Token prices come in two tiers: ``online`` (requests) and ``batch`` (the lines of batch jobs);
where a model has no batch entry in force, its online price applies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sqlalchemy import select

from billing.money import BATCH, CATALOG_BATCH_SHARE, EPOCH, ONLINE, TIERS, InstancePrice, Price, as_utc
from billing.tables import InstancePriceRow, PriceRow
from meterway.errors import Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from billing.events import UsageEvent
    from models.catalog import ModelSpec

INSTANCE_TYPE_PATTERN = r"^[a-z0-9-]{1,32}$"
_INSTANCE_TYPE = re.compile(INSTANCE_TYPE_PATTERN)


class _Dated(Protocol):
    @property
    def effective_from(self) -> datetime: ...


_P = TypeVar("_P", bound=_Dated)


def price_from_row(row: PriceRow) -> Price:
    """The token price an ORM row holds."""
    return Price(row.model, row.input_per_million, row.output_per_million, row.currency,
                 as_utc(row.effective_from), row.tier)


def instance_price_from_row(row: InstancePriceRow) -> InstancePrice:
    """The instance price an ORM row holds."""
    return InstancePrice(row.model, row.instance_type, row.per_minute, row.currency, as_utc(row.effective_from))


def check_instance_type(instance_type: str) -> str:
    """Validate an instance type name: 1-32 lower-case letters, digits or '-'."""
    if not _INSTANCE_TYPE.match(instance_type or ""):
        raise InvalidRequest(f"instance_type must be 1-32 lower-case letters, digits or '-', not "
                             f"{instance_type!r}", param="instance_type")
    return instance_type


def check_tier(tier: str) -> str:
    """Validate a token price tier: 'online' or 'batch'."""
    if tier not in TIERS:
        raise InvalidRequest(f"tier must be one of {', '.join(TIERS)}, not {tier!r}", param="tier")
    return tier


def candidates(model: str, base_model: str | None) -> list[str]:
    """The models whose price applies to ``model``, in order: its own, then its base model's (fine-tunes)."""
    return [model, base_model] if base_model and base_model != model else [model]


def models_to_price(events: Sequence[UsageEvent]) -> tuple[set[str], set[str]]:
    """The models (base models included) whose token prices and whose instance prices ``events`` may need."""
    tokens: set[str] = set()
    instances: set[str] = set()
    for event in events:
        (instances if event.instance_minutes > 0 else tokens).update(candidates(event.model, event.base_model))
    return tokens, instances


class _Timeline(Generic[_P]):
    """Entries per key, oldest first: which one was in force at a moment, without SQL."""

    def __init__(self, entries: Iterable[_P], key: Callable[[_P], Hashable]) -> None:
        self._by_key: dict[Hashable, list[_P]] = {}
        for entry in sorted(entries, key=lambda e: e.effective_from):
            self._by_key.setdefault(key(entry), []).append(entry)

    def at(self, key: Hashable, moment: datetime) -> _P | None:
        found = None
        for entry in self._by_key.get(key, []):
            if entry.effective_from > moment:
                break
            found = entry
        return found


class PriceTable:
    """Token prices (both tiers) and instance prices of some models, loaded once; answers 'which price was in
    force at t'."""

    def __init__(self, prices: Iterable[Price], instance_prices: Iterable[InstancePrice] = ()) -> None:
        self._tokens = _Timeline(prices, lambda p: (p.model, p.tier))
        self._instances = _Timeline(instance_prices, lambda p: (p.model, p.instance_type))

    def at(self, model: str, moment: datetime, tier: str = ONLINE) -> Price | None:
        """The latest token price of ``model`` in ``tier`` whose start is at or before ``moment`` (no fallback
        from one tier to the other: the caller decides)."""
        return self._tokens.at((model, tier), as_utc(moment))

    def instance_at(self, model: str, instance_type: str | None, moment: datetime) -> InstancePrice | None:
        """The latest price per minute of ``model`` on ``instance_type`` whose start is at or before ``moment``."""
        return self._instances.at((model, instance_type), as_utc(moment))


async def load_price_table(session: AsyncSession, models: Iterable[str],
                           instance_models: Iterable[str] = ()) -> PriceTable:
    """Every token price of ``models`` (both tiers) and every instance price of ``instance_models``, in one
    table."""
    tokens = (await session.execute(select(PriceRow).where(PriceRow.model.in_(set(models))))).scalars()
    prices = [price_from_row(row) for row in tokens]
    instance_models = set(instance_models)
    instances = [instance_price_from_row(row) for row in (await session.execute(
        select(InstancePriceRow).where(InstancePriceRow.model.in_(instance_models))
    )).scalars()] if instance_models else []
    return PriceTable(prices, instances)


class PriceBook:
    """Reads and appends prices. An entry is never edited: a change is a new entry with a later start."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], currency: str) -> None:
        self._sessions = sessions
        self.currency = currency

    async def quote(self, model: str, at: datetime | None = None, tier: str = ONLINE) -> Price:
        """The token price in force for ``model`` in ``tier`` at ``at`` (now by default); for budget
        reservations. A batch quote without a batch entry in force is the online price, as in the ledger."""
        at = at or datetime.now(UTC)
        row = None
        for wanted in (BATCH, ONLINE) if check_tier(tier) == BATCH else (ONLINE,):
            row = await _in_force(self._sessions, PriceRow, _same_price(model, wanted), at)
            if row is not None:
                break
        if row is None:
            raise NotFound(f"no price for model '{model}' at {at.isoformat()}", param="model",
                           code="no_price")
        return price_from_row(row)

    async def instance_quote(self, model: str, instance_type: str, at: datetime | None = None, *,
                             base_model: str | None = None) -> InstancePrice:
        """The price per instance-minute in force for ``model`` on ``instance_type`` at ``at`` (now by
        default), falling back to ``base_model``'s for a fine-tune without its own."""
        at = at or datetime.now(UTC)
        for candidate in candidates(model, base_model):
            where = [InstancePriceRow.model == candidate, InstancePriceRow.instance_type == instance_type]
            row = await _in_force(self._sessions, InstancePriceRow, where, at)
            if row is not None:
                return instance_price_from_row(row)
        raise NotFound(f"no instance price for model '{model}' on '{instance_type}' at {at.isoformat()}",
                       param="instance_type", code="no_price")

    async def table(self, models: Iterable[str], instance_models: Iterable[str] = ()) -> PriceTable:
        """Every price of ``models`` (and instance price of ``instance_models``), for pricing a batch."""
        async with self._sessions() as session:
            return await load_price_table(session, models, instance_models)

    async def list_instance_prices(self, model: str | None = None) -> list[InstancePrice]:
        """All instance price entries (of one model, or of all), by model and instance type, oldest first."""
        rows = await _entries(self._sessions, InstancePriceRow, model, InstancePriceRow.model,
                              InstancePriceRow.instance_type, InstancePriceRow.effective_from)
        return [instance_price_from_row(row) for row in rows]

    async def list(self, model: str | None = None, tier: str | None = None) -> list[Price]:
        """All token price entries (of one model, or of all; of one tier, or of both), by model and tier,
        oldest first."""
        rows = await _entries(self._sessions, PriceRow, model, PriceRow.model, PriceRow.tier,
                              PriceRow.effective_from,
                              where=[] if tier is None else [PriceRow.tier == check_tier(tier)])
        return [price_from_row(row) for row in rows]

    async def set_price(self, model: str, input_per_million: Decimal, output_per_million: Decimal,
                        effective_from: datetime | None = None, tier: str = ONLINE) -> Price:
        """Append a token price for ``model`` in ``tier`` from ``effective_from`` (now by default) on."""
        start = _start(model, effective_from)
        row = _row(model, input_per_million, output_per_million, self.currency, start, check_tier(tier))
        what = f"'{model}'" if tier == ONLINE else f"'{model}' ({tier})"
        await _append(self._sessions, row, _same_price(model, tier), what)
        return Price(model, input_per_million, output_per_million, self.currency, start, tier)

    async def set_instance_price(self, model: str, instance_type: str, per_minute: Decimal,
                                 effective_from: datetime | None = None) -> InstancePrice:
        """Append a price per instance-minute for ``model`` on ``instance_type`` from ``effective_from`` (now
        by default) on."""
        start = _start(model, effective_from)
        check_instance_type(instance_type)
        row = InstancePriceRow(model=model, instance_type=instance_type, per_minute=per_minute,
                               currency=self.currency, effective_from=start, created_at=datetime.now(UTC))
        same = [InstancePriceRow.model == model, InstancePriceRow.instance_type == instance_type]
        await _append(self._sessions, row, same, f"'{model}' on '{instance_type}'")
        return InstancePrice(model, instance_type, per_minute, self.currency, start)

    async def seed(self, specs: Iterable[ModelSpec]) -> int:
        """Give each catalog model without any online price its catalog default, and each one without any
        batch price half of that default, effective from the epoch; returns how many entries it added."""
        specs = list(specs)
        added = 0
        async with self._sessions() as session, session.begin():
            for tier, share in ((ONLINE, Decimal(1)), (BATCH, CATALOG_BATCH_SHARE)):
                query = select(PriceRow.model).where(PriceRow.tier == tier).distinct()
                priced = set((await session.execute(query)).scalars())
                for spec in (s for s in specs if s.id not in priced):
                    session.add(_row(spec.id, spec.input_price_per_million * share,
                                     spec.output_price_per_million * share, self.currency, EPOCH, tier))
                    added += 1
        return added


async def _in_force(sessions: async_sessionmaker[AsyncSession], table: Any, where: list[Any],
                    at: datetime) -> Any:
    """The row of ``table`` matching ``where`` that was in force at ``at``, or None."""
    async with sessions() as session:
        return (await session.execute(
            select(table).where(*where, table.effective_from <= at)
            .order_by(table.effective_from.desc()).limit(1))).scalar_one_or_none()


def _same_price(model: str, tier: str) -> list[Any]:
    """The conditions that pick the token price entries of ``model`` in ``tier``."""
    return [PriceRow.model == model, PriceRow.tier == tier]


async def _entries(sessions: async_sessionmaker[AsyncSession], table: Any, model: str | None,
                   *order: Any, where: Sequence[Any] = ()) -> list[Any]:
    query = select(table).where(*where).order_by(*order)
    if model:
        query = query.where(table.model == model)
    async with sessions() as session:
        return list((await session.execute(query)).scalars())


async def _append(sessions: async_sessionmaker[AsyncSession], row: Any, same: list[Any], what: str) -> None:
    """Add ``row`` unless an entry with the same key (``same``) already starts when it does."""
    table = type(row)
    async with sessions() as session, session.begin():
        clash = await session.scalar(select(table.id).where(*same, table.effective_from == row.effective_from))
        if clash is not None:
            raise Conflict(f"a price for {what} already starts at {row.effective_from.isoformat()}",
                           param="effective_from", code="price_exists")
        session.add(row)


def _start(model: str, effective_from: datetime | None) -> datetime:
    if not model:
        raise InvalidRequest("model is required", param="model")
    return as_utc(effective_from) if effective_from else datetime.now(UTC)


def _row(model: str, input_pm: Decimal, output_pm: Decimal, currency: str, start: datetime,
         tier: str) -> PriceRow:
    return PriceRow(model=model, tier=tier, effective_from=start, input_per_million=input_pm,
                    output_per_million=output_pm, currency=currency, created_at=datetime.now(UTC))
