"""The ``meterway`` command: serve, prepare the store and database, and manage keys over the REST API.

Server-side commands (``serve``, ``import-models``, ``migrate``, ``billing ...``) act on ``METERWAY_HOME`` and
the database; client-side commands (``keys ...``, ``models upload``) talk to the server at ``METERWAY_URL``
with ``METERWAY_API_KEY`` (or, on the server's own machine, the generated admin key).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import httpx
import structlog

from meterway import APIConnectionError, APIError
from meterway.roles import TENANT_ROLES
from meterway.settings import Settings, SettingsError, describe
from service.cli_client import client, print_json


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``meterway`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        raise SystemExit(2)
    try:
        args.run(args)
    except (httpx.HTTPError, APIConnectionError) as exc:
        raise SystemExit(f"meterway: cannot reach the server: {exc}") from exc
    except APIError as exc:
        raise SystemExit(f"meterway: {exc.status_code}: {exc.message}") from None
    except SettingsError as exc:
        raise SystemExit(f"meterway: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterway", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="import the demo models, migrate, and serve on METERWAY_HOST:PORT")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)
    prepare = commands.add_parser("prepare", help="import the demo models and migrate, without serving")
    prepare.add_argument("--no-migrate", action="store_true", help="only import the models (image builds)")
    prepare.set_defaults(run=lambda a: _prepare(Settings.from_env(), migrate_database=not a.no_migrate))
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)
    commands.add_parser("config", help="list every METERWAY_* setting").set_defaults(run=_config)
    _add_key_commands(commands)
    _add_plugin_commands(commands)
    return parser


def _add_plugin_commands(commands: Any) -> None:
    from billing.cli import add_billing_commands
    from service.cli_batches import add_batch_commands
    from service.cli_endpoints import add_endpoint_commands
    from service.cli_models import add_model_commands

    add_billing_commands(commands)
    add_model_commands(commands)
    add_endpoint_commands(commands, _prepare)
    add_batch_commands(commands)


def _prepare(settings: Settings, *, migrate_database: bool = True) -> None:
    """Import the demo models into a cold store (in a process of its own: it imports torch), then migrate."""
    from meterway.db import migrate
    from models.catalog import load_catalog
    from models.store.importer import pending

    if pending(load_catalog(), settings.store_dir):
        subprocess.run([sys.executable, "-m", "models.store.importer", str(settings.store_dir)], check=True)
    if migrate_database:
        migrate(settings.database_url)


def _serve(args: argparse.Namespace) -> None:
    import asyncio

    import uvicorn

    settings = Settings.from_env()
    # One loop for the whole process: the standby worker started first is the pool's to adopt on it.
    with asyncio.Runner() as runner:
        if settings.pool.standby and settings.pool.backend == "local":
            from models.pool.standby import start_early

            runner.run(start_early())  # its torch import runs while this process starts the gateway
        _prepare(settings, migrate_database=settings.database.migrate_on_serve)
        if not settings.database.migrate_on_serve:
            _check_schema(settings)
        host, port = args.host or settings.server.host, args.port or settings.server.port
        server = uvicorn.Server(uvicorn.Config(_gateway(settings, host, port), host=host, port=port, log_config=None,
                                               access_log=False, timeout_graceful_shutdown=10))
        runner.run(server.serve())


def _check_schema(settings: Settings) -> None:
    """Refuse to serve a database that ``meterway migrate`` has not brought to this code's schema."""
    from meterway.db import check_schema

    try:
        check_schema(settings.database_url)
    except RuntimeError as exc:
        raise SystemExit(f"meterway: {exc}") from exc


def _gateway(settings: Settings, host: str, port: int) -> Any:
    """The gateway's app, after the admin key (shown once when it was just generated)."""
    from service.app import create_app
    from service.secrets import admin_key_file, load_secrets

    platform = load_secrets(settings)
    if platform.admin_key_generated:
        print(f"\nGenerated the admin key (kept in {admin_key_file(settings)}, shown once):\n\n"
              f"    {platform.admin_key}\n\nCreate a tenant key with it:\n"
              f"    curl -H 'Authorization: Bearer <admin key>' -d '{{\"tenant\":\"acme\",\"name\":\"ci\"}}' "
              f"http://{settings.server.host}:{settings.server.port}/v1/keys\n", flush=True)
    app = create_app(settings)  # configures the JSON logs
    structlog.get_logger("meterway.cli").info("serving", url=f"http://{host}:{port}", openapi="/schema/swagger")
    return app


def _migrate(_args: argparse.Namespace) -> None:
    from meterway.db import migrate

    migrate(Settings.from_env().database_url)


def _config(_args: argparse.Namespace) -> None:
    for name, default, doc in describe():
        print(f"{name:36} {default!s:24} {doc}")


def _add_key_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys (through the server)").add_subparsers(title="keys")
    create = keys.add_parser("create", help="create a tenant key; prints its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="default")
    _limit_flags(create)
    create.set_defaults(run=lambda a: print_json(client().keys.create(**_body(a, "tenant", "name"))))
    listing = keys.add_parser("list", help="list keys (no secrets)")
    listing.add_argument("--tenant")
    listing.set_defaults(run=lambda a: print_json(client().get("/v1/keys", params={"tenant": a.tenant})))
    update = keys.add_parser("update", help="change a key's limits, role or scope")
    update.add_argument("key_id")
    _limit_flags(update)
    update.set_defaults(run=lambda a: print_json(client().keys.update(a.key_id, **_body(a))))
    for verb, help_text in (("revoke", "revoke a key at once"), ("rotate", "new secret; old one has a grace")):
        command = keys.add_parser(verb, help=help_text)
        command.add_argument("key_id")
        command.set_defaults(run=_key_action(verb))


def _key_action(verb: str) -> Any:
    def run(args: argparse.Namespace) -> None:
        keys = client().keys
        print_json(keys.revoke(args.key_id) if verb == "revoke" else keys.rotate(args.key_id))

    return run


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    for flag in ("rpm", "tpm", "rpd", "max-concurrency"):
        parser.add_argument(f"--{flag}", type=int)
    parser.add_argument("--budget-amount", help="decimal amount in the price book's currency")
    parser.add_argument("--budget-period", choices=["day", "month"])
    parser.add_argument("--role", choices=TENANT_ROLES, help="what the key may do (default owner)")
    parser.add_argument("--models", type=_names, help="comma-separated: the only models the key may call")
    parser.add_argument("--endpoints", type=_names,
                        help="comma-separated: the only endpoints it may call ('serverless' is /v1)")
    parser.add_argument("--expires-at", type=int, help="unix seconds after which the key is refused")


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _body(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    fields = (*names, "rpm", "tpm", "rpd", "max_concurrency", "budget_amount", "budget_period", "role", "models",
              "endpoints", "expires_at")
    return {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}


if __name__ == "__main__":
    main(sys.argv[1:])
