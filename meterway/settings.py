"""meterway's one typed settings object, read from ``METERWAY_*`` environment variables.

Nothing here runs at import time: ``Settings.from_env()`` is called by the CLI (or a test) and the result is
passed to ``create_app(settings)``. Every field names its variable and says what it is for.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, get_type_hints


class SettingsError(ValueError):
    """The environment names a setting that does not exist or gives one a value it cannot take."""


def _env(name: str, doc: str, default: Any = None) -> Any:
    return field(default=default, metadata={"env": name, "doc": doc})


@dataclass(frozen=True)
class ServerSettings:
    """Where the HTTP gateway listens and what it accepts."""

    host: str = _env("METERWAY_HOST", "interface to bind", "127.0.0.1")
    port: int = _env("METERWAY_PORT", "TCP port to serve on", 8080)
    max_body_bytes: int = _env("METERWAY_MAX_BODY_BYTES", "largest JSON request body accepted (413 past it)",
                               4 * 1024 * 1024)
    json_max_depth: int = _env("METERWAY_JSON_MAX_DEPTH", "deepest nesting of a JSON request body (400 past it; "
                               "at most 512)", 64)
    max_upload_bytes: int = _env("METERWAY_MAX_UPLOAD_BYTES", "largest file or fine-tune upload accepted",
                                 2 * 1024 * 1024 * 1024)
    log_level: str = _env("METERWAY_LOG_LEVEL", "structlog level: debug, info, warning, error", "info")
    request_timeout_s: float = _env("METERWAY_REQUEST_TIMEOUT_S", "longest a generation may run", 300.0)
    metrics_token: str = _env("METERWAY_METRICS_TOKEN", "when set, /metrics needs 'Authorization: Bearer "
                              "<this token>' (empty: open, without tenant-identifying labels)", "")
    enable_test_model: bool = _env("METERWAY_ENABLE_TEST_MODEL",
                                   "list and serve the built-in deterministic 'meterway-echo' model", False)
    mirror_max_inflight: int = _env("METERWAY_MIRROR_MAX_INFLIGHT", "mirrored copies one deployment runs at once "
                                    "(more are dropped and counted)", 4)
    burst_hold_ms: float = _env("METERWAY_BURST_HOLD_MS", "longest a generation request waits for others the "
                                "gateway is still reading, so that a burst is prefilled in one pass (0: off)", 25.0)

    def __post_init__(self) -> None:
        if not 1 <= self.json_max_depth <= 512:  # the standard library's scanner recurses once per level
            raise SettingsError(f"METERWAY_JSON_MAX_DEPTH={self.json_max_depth} must be between 1 and 512")


@dataclass(frozen=True)
class DatabaseSettings:
    """The relational store: SQLite under METERWAY_HOME by default, PostgreSQL in production."""

    url: str = _env("METERWAY_DATABASE_URL", "SQLAlchemy async URL; empty means SQLite under METERWAY_HOME", "")
    echo: bool = _env("METERWAY_DATABASE_ECHO", "log every SQL statement", False)
    migrate_on_serve: bool = _env("METERWAY_MIGRATE_ON_SERVE", "serve migrates the database first; off: it only "
                                  "checks the schema is current (migrations run once, by `meterway migrate`)", True)


@dataclass(frozen=True)
class AuthSettings:
    """Platform admin key, the secret that keys are hashed with, and the platform's token issuer."""

    admin_key: str = _env("METERWAY_ADMIN_KEY", "platform admin key; generated under METERWAY_HOME when unset "
                          "in local mode, required otherwise", "")
    key_pepper: str = _env("METERWAY_KEY_PEPPER", "HMAC secret for key hashes; generated under METERWAY_HOME "
                           "when unset in local mode", "")
    rotation_grace_s: int = _env("METERWAY_KEY_ROTATION_GRACE_S",
                                 "how long a regenerated key's old secret keeps working", 3600)
    platform_issuer: str = _env("METERWAY_PLATFORM_ISSUER", "OpenID Connect issuer whose tokens are the platform "
                                "admin (its iss, exactly); empty: admins use the admin key only", "")
    platform_audience: str = _env("METERWAY_PLATFORM_AUDIENCE", "the audience (aud) the platform issuer's tokens "
                                  "must carry; required with METERWAY_PLATFORM_ISSUER", "")

    def __post_init__(self) -> None:
        if bool(self.platform_issuer) != bool(self.platform_audience):
            raise SettingsError("METERWAY_PLATFORM_ISSUER and METERWAY_PLATFORM_AUDIENCE are set together")


@dataclass(frozen=True)
class PoolSettings:
    """The shared model pool: worker processes, memory budget, idle unload, queues."""

    backend: str = _env("METERWAY_POOL_BACKEND", "pool implementation: 'local' worker processes", "local")
    memory_budget_mb: int = _env("METERWAY_POOL_MEMORY_BUDGET_MB",
                                 "memory the loaded models may use together (GPU memory where there is one)",
                                 4096)
    idle_ttl_s: float = _env("METERWAY_POOL_IDLE_TTL_S", "unload a model idle this long (scale to zero)", 600.0)
    load_wait_s: float = _env("METERWAY_POOL_LOAD_WAIT_S",
                              "how long a request waits for a loading model before 503 + Retry-After", 30.0)
    queue_limit: int = _env("METERWAY_POOL_QUEUE_LIMIT",
                            "requests waiting or running per model before 429", 64)
    max_batch: int = _env("METERWAY_POOL_MAX_BATCH", "sequences decoded together per model", 16)
    background_batch: int = _env("METERWAY_POOL_BACKGROUND_BATCH", "rows batch-job lines may fill when no online "
                                 "request arrived in the last 10 s (0: METERWAY_POOL_MAX_BATCH)", 32)
    max_n: int = _env("METERWAY_POOL_MAX_N", "largest 'n' (choices per request) accepted", 4)
    device: str = _env("METERWAY_POOL_DEVICE", "'auto' (CUDA when present), 'cpu' or 'cuda'", "auto")
    threads: int = _env("METERWAY_POOL_THREADS", "torch threads per worker; 0 means all cores", 0)
    call_timeout_s: float = _env("METERWAY_POOL_CALL_TIMEOUT_S",
                                 "a worker that does not answer a call (embed, adapter attach, stats) this long "
                                 "is stopped as hung and its requests fail with a clear error", 120.0)
    load_timeout_s: float = _env("METERWAY_POOL_LOAD_TIMEOUT_S",
                                 "a model load that has not finished after this long is abandoned and its worker "
                                 "stopped", 600.0)
    standby: bool = _env("METERWAY_POOL_STANDBY", "keep one worker process started ahead of need (runtime "
                         "imported, no model loaded) so that a cold start only loads weights", True)


@dataclass(frozen=True)
class LimitSettings:
    """Per-key throttling defaults and the shared limit store."""

    redis_url: str = _env("METERWAY_REDIS_URL", "Redis for limits shared across replicas; empty = in memory", "")
    default_rpm: int = _env("METERWAY_DEFAULT_RPM", "requests per minute for keys without their own; 0 = none", 0)
    default_tpm: int = _env("METERWAY_DEFAULT_TPM", "tokens per minute for keys without their own; 0 = none", 0)
    default_max_concurrency: int = _env("METERWAY_DEFAULT_MAX_CONCURRENCY",
                                        "concurrent requests per key without their own; 0 = none", 0)
    batch_queued_lines: int = _env("METERWAY_BATCH_QUEUED_LINES", "lines a tenant may have in unfinished batches "
                                   "(a new batch past it is a 429); 0 = none", 200_000)


@dataclass(frozen=True)
class BillingSettings:
    """Usage events, the ledger consumer and the Stripe export."""

    currency: str = _env("METERWAY_CURRENCY", "ISO currency of every price", "usd")
    nats_url: str = _env("METERWAY_NATS_URL", "NATS JetStream for usage events; empty = local durable log", "")
    consumer_batch: int = _env("METERWAY_LEDGER_BATCH", "events written per ledger transaction", 500)
    consumer_interval_s: float = _env("METERWAY_LEDGER_INTERVAL_S", "how often the consumer drains", 0.2)
    consumer_in_server: bool = _env("METERWAY_LEDGER_IN_SERVER",
                                    "run the ledger consumer inside the server (off when it runs as "
                                    "'python -m billing.consumer')", True)
    stripe_api_key: str = _env("METERWAY_STRIPE_API_KEY", "Stripe secret key for meter events", "")
    stripe_api_base: str = _env("METERWAY_STRIPE_API_BASE", "Stripe API base (a local server in tests)", "")
    stripe_meter_event: str = _env("METERWAY_STRIPE_METER_EVENT", "Stripe meter event name", "meterway_tokens")
    stripe_instance_meter_event: str = _env("METERWAY_STRIPE_INSTANCE_METER_EVENT",
                                            "Stripe meter event name of instance-minutes (dedicated deployments)",
                                            "meterway_instance_minutes")
    stripe_export_interval_s: float = _env("METERWAY_STRIPE_EXPORT_INTERVAL_S",
                                           "how often the export runs in the server; 0 = only on demand", 0.0)


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console at /console: its session cookie and the API it calls."""

    secret: str = _env("METERWAY_CONSOLE_SECRET", "key that seals console session cookies; generated under "
                       "METERWAY_HOME (console.key) when unset (replicas must share one)", "")
    session_ttl_s: int = _env("METERWAY_CONSOLE_SESSION_TTL_S", "how long a console sign-in lasts", 8 * 3600)
    api_url: str = _env("METERWAY_CONSOLE_API_URL", "the REST API the console calls; empty: the address the "
                        "browser reached the console at", "")


@dataclass(frozen=True)
class Settings:
    """Everything meterway reads from its environment, nested by concern."""

    home: Path = _env("METERWAY_HOME", "state directory: SQLite, model store, event log, generated keys",
                      Path("var"))
    mode: str = _env("METERWAY_MODE", "'local' (embedded defaults allowed) or 'production'", "local")
    store: str = _env("METERWAY_STORE", "model store directory; empty means METERWAY_HOME/models", "")
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    pool: PoolSettings = field(default_factory=PoolSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); keyword overrides win.

        A ``METERWAY_*`` variable that no setting (nor a client-side variable) reads is an error naming it,
        so that a misspelling stops start-up instead of being ignored.
        """
        env = os.environ if environ is None else environ
        _refuse_unknown(env)
        settings = _read(cls, env)
        return dataclasses.replace(settings, **overrides) if overrides else settings

    @property
    def database_url(self) -> str:
        """The effective database URL (SQLite under ``home`` unless set)."""
        return self.database.url or f"sqlite+aiosqlite:///{(self.home / 'meterway.db').resolve()}"

    @property
    def store_dir(self) -> Path:
        """The model store: imported catalog weights and uploaded fine-tunes."""
        return Path(self.store) if self.store else self.home / "models"

    @property
    def is_local(self) -> bool:
        return self.mode == "local"


def _read(kind: type, env: Any) -> Any:
    hints = get_type_hints(kind)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _read(hint, env)  # type: ignore[arg-type]
        elif f.metadata.get("env") in env:
            values[f.name] = _convert(env[f.metadata["env"]], hint, f.metadata["env"])
    return kind(**values)


# Read by the CLI and the client side, not by the server; and the test suite's own prefix.
CLIENT_VARIABLES = {"METERWAY_URL": "the server the CLI talks to",
                    "METERWAY_API_KEY": "the key the CLI sends",
                    "METERWAY_UPLOAD_CACHE": "where the CLI keeps resumable uploads' state"}
TEST_PREFIX = "METERWAY_TEST_"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _refuse_unknown(env: Any) -> None:
    known = {name for name, _default, _doc in describe()} | set(CLIENT_VARIABLES)
    unknown = sorted(name for name in env if name.startswith("METERWAY_") and name not in known
                     and not name.startswith(TEST_PREFIX))
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(unknown)}: no METERWAY_* variable has this name "
                         "(`meterway config` lists them)")


def _convert(raw: str, hint: Any, name: str) -> Any:
    if hint is bool:
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise SettingsError(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off")
        return word in _TRUE
    try:
        if hint in (int, float, Decimal, Path):
            return hint(raw)
        return raw
    except (ValueError, ArithmeticError) as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {getattr(hint, '__name__', hint)}") from exc


def describe() -> list[tuple[str, str, str]]:
    """Every variable with its default and meaning, for the README and ``meterway config``."""
    rows: list[tuple[str, str, str]] = []

    def walk(kind: type) -> None:
        hints = get_type_hints(kind)
        for f in dataclasses.fields(kind):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name])
            else:
                default = f.default if f.default is not dataclasses.MISSING else ""
                rows.append((f.metadata["env"], str(default), f.metadata["doc"]))

    walk(Settings)
    return rows
