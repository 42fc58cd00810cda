"""``meterway billing ...`` and ``meterway usage report``: server-side commands on the settings' database.

    meterway billing close --period 2026-11 [--format json|csv]
    meterway billing statements --period 2026-11 [--format json|csv]
    meterway billing export-stripe
    meterway billing reconcile
    meterway billing link-stripe --tenant acme --customer cus_123
    meterway billing prices [--model M] [--tier online|batch]
    meterway billing set-price --model M --input 0.05 --output 0.10 [--from 2026-12-01] [--tier batch]
    meterway billing instance-prices [--model M]
    meterway billing set-instance-price --model M --instance-type gpu-small --per-minute 0.02 [--from ...]
    meterway billing consume            # drain the bus into the ledger once, then exit
    meterway usage report --start 2026-11-01 --end 2026-11-30 --group-by day,model --format csv
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

import structlog

from billing.money import TIERS, format_decimal, parse_amount
from billing.periods import statements_csv, statements_json
from billing.reports import GROUPS, UsageQuery, parse_bound, parse_group_by
from meterway.errors import MeterwayError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    from billing.wiring import Billing

    Action = Callable[[Billing, argparse.Namespace], Awaitable[str]]

def add_billing_commands(subparsers: Any) -> None:
    """Add ``billing`` and ``usage`` (each with their subcommands) to meterway's argparse subparsers."""
    billing = subparsers.add_parser("billing", help="period close, Stripe export, prices (on the database)")
    commands = billing.add_subparsers(title="billing commands", required=True)
    close = commands.add_parser("close", help="freeze a period into per-tenant statements")
    close.add_argument("--period", required=True, help="YYYY-MM (UTC month)")
    close.add_argument("--format", choices=("json", "csv"), default="json")
    close.set_defaults(run=_command(_close))
    shown = commands.add_parser("statements", help="print the statements of a closed period")
    shown.add_argument("--period", required=True)
    shown.add_argument("--tenant")
    shown.add_argument("--format", choices=("json", "csv"), default="json")
    shown.set_defaults(run=_command(_statements))
    commands.add_parser("export-stripe", help="send usage to Stripe as meter events").set_defaults(
        run=_command(_export))
    commands.add_parser("reconcile", help="ledger vs exported tokens and instance-minutes per tenant").set_defaults(
        run=_command(_reconcile))
    link = commands.add_parser("link-stripe", help="link a tenant to a Stripe customer id")
    link.add_argument("--tenant", required=True)
    link.add_argument("--customer", required=True)
    link.set_defaults(run=_command(_link))
    _add_price_commands(commands)
    commands.add_parser("consume", help="drain the usage bus into the ledger once").set_defaults(
        run=_command(_consume))
    _add_usage_commands(subparsers)


def _add_price_commands(commands: Any) -> None:
    prices = commands.add_parser("prices", help="list the price book")
    prices.add_argument("--model")
    prices.add_argument("--tier", choices=TIERS, help="one tier only (default: both)")
    prices.set_defaults(run=_command(_prices))
    set_price = commands.add_parser("set-price", help="add a price (per 1M tokens) from a start time on")
    set_price.add_argument("--model", required=True)
    set_price.add_argument("--input", required=True, help="price per 1M input tokens, e.g. 0.05")
    set_price.add_argument("--output", required=True, help="price per 1M output tokens")
    set_price.add_argument("--from", dest="effective_from", help="ISO datetime or unix seconds; default now")
    set_price.add_argument("--tier", choices=TIERS, default="online",
                           help="online (requests, the default) or batch (the lines of batch jobs)")
    set_price.set_defaults(run=_command(_set_price))
    instance_prices = commands.add_parser("instance-prices", help="list the instance price book")
    instance_prices.add_argument("--model")
    instance_prices.set_defaults(run=_command(_instance_prices))
    set_instance = commands.add_parser("set-instance-price",
                                       help="add a price per instance-minute of a model on an instance type")
    set_instance.add_argument("--model", required=True)
    set_instance.add_argument("--instance-type", required=True, help="1-32 lower-case letters, digits or '-'")
    set_instance.add_argument("--per-minute", required=True, help="price per started instance-minute")
    set_instance.add_argument("--from", dest="effective_from", help="ISO datetime or unix seconds; default now")
    set_instance.set_defaults(run=_command(_set_instance_price))


def _add_usage_commands(subparsers: Any) -> None:
    usage = subparsers.add_parser("usage", help="usage reports from the ledger")
    commands = usage.add_subparsers(title="usage commands", required=True)
    report = commands.add_parser("report", help="billable usage grouped by day, model, key and/or tenant")
    report.add_argument("--start", help="unix seconds, ISO date or datetime (inclusive)")
    report.add_argument("--end", help="exclusive; a date alone includes that day")
    report.add_argument("--group-by", default="day,model", help=f"any of {','.join(GROUPS)}")
    report.add_argument("--tenant", help="one tenant only")
    report.add_argument("--format", choices=("json", "csv"), default="json")
    report.set_defaults(run=_command(_usage_report))


def _command(action: Action) -> Callable[[argparse.Namespace], None]:
    """Run ``action`` with billing built on the settings' database, print its output, map domain errors."""

    def run(args: argparse.Namespace) -> None:
        # Output (JSON, CSV) goes to stdout; logs go to stderr so that the output stays parseable.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        try:
            print(asyncio.run(_with_billing(action, args)))
        except MeterwayError as exc:
            print(f"meterway: {exc.message}", file=sys.stderr)
            raise SystemExit(1) from exc

    return run


async def _with_billing(action: Action, args: argparse.Namespace) -> str:
    from billing.wiring import build_billing
    from meterway.db import Database
    from meterway.settings import Settings

    settings = Settings.from_env()
    database = Database.connect(settings.database_url)
    billing = build_billing(settings, database, run_consumer=False)
    try:
        return await action(billing, args)
    finally:
        await billing.bus.close()
        await database.close()


async def _close(billing: Billing, args: argparse.Namespace) -> str:
    statements = await billing.periods.close_period(args.period)
    return statements_csv(statements) if args.format == "csv" else statements_json(statements)


async def _statements(billing: Billing, args: argparse.Namespace) -> str:
    statements = await billing.periods.statements(args.period, args.tenant)
    return statements_csv(statements) if args.format == "csv" else statements_json(statements)


async def _export(billing: Billing, _args: argparse.Namespace) -> str:
    if billing.exporter is None:
        raise SystemExit("meterway: set METERWAY_STRIPE_API_KEY to export to Stripe")
    result = await billing.exporter.export()
    return json.dumps({"sent": result.sent, "already_there": result.already_there, "tokens": result.tokens,
                       "instance_minutes": result.instance_minutes})


async def _reconcile(billing: Billing, _args: argparse.Namespace) -> str:
    if billing.exporter is None:
        raise SystemExit("meterway: set METERWAY_STRIPE_API_KEY to reconcile with Stripe")
    lines = await billing.exporter.reconcile()
    return json.dumps({"data": [line.as_dict() for line in lines],
                       "balanced": all(line.balanced for line in lines)}, indent=2)


async def _link(billing: Billing, args: argparse.Namespace) -> str:
    await billing.link_stripe_customer(args.tenant, args.customer)
    return f"tenant {args.tenant} linked to Stripe customer {args.customer}"


async def _prices(billing: Billing, args: argparse.Namespace) -> str:
    rows = [{"model": p.model, "tier": p.tier, "input_per_million": format_decimal(p.input_per_million),
             "output_per_million": format_decimal(p.output_per_million), "currency": p.currency,
             "effective_from": p.effective_from.isoformat()}
            for p in await billing.prices.list(args.model, args.tier)]
    return json.dumps({"data": rows}, indent=2)


async def _set_price(billing: Billing, args: argparse.Namespace) -> str:
    start = parse_bound(args.effective_from, "effective_from") if args.effective_from else None
    price = await billing.prices.set_price(args.model, parse_amount(args.input, "input"),
                                           parse_amount(args.output, "output"), start, args.tier)
    return f"{price.model} ({price.tier}): {price.input_per_million}/{price.output_per_million} {price.currency} " \
           f"per 1M tokens from {price.effective_from.isoformat()}"


async def _instance_prices(billing: Billing, args: argparse.Namespace) -> str:
    rows = [{"model": p.model, "instance_type": p.instance_type, "per_minute": format_decimal(p.per_minute),
             "currency": p.currency, "effective_from": p.effective_from.isoformat()}
            for p in await billing.prices.list_instance_prices(args.model)]
    return json.dumps({"data": rows}, indent=2)


async def _set_instance_price(billing: Billing, args: argparse.Namespace) -> str:
    start = parse_bound(args.effective_from, "effective_from") if args.effective_from else None
    price = await billing.prices.set_instance_price(args.model, args.instance_type,
                                                    parse_amount(args.per_minute, "per_minute"), start)
    return f"{price.model} on {price.instance_type}: {price.per_minute} {price.currency} per instance-minute " \
           f"from {price.effective_from.isoformat()}"


async def _consume(billing: Billing, _args: argparse.Namespace) -> str:
    return f"{await billing.consumer.drain()} events drained into the ledger"


async def _usage_report(billing: Billing, args: argparse.Namespace) -> str:
    query = UsageQuery(parse_bound(args.start, "start"), parse_bound(args.end, "end"),
                       parse_group_by(args.group_by), args.tenant)
    report = await billing.reports.report(query)
    return report.as_csv().rstrip("\n") if args.format == "csv" else json.dumps(report.as_json(), indent=2)
