"""Typed settings read from the environment: the one source of truth for configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from observability.tenants import DEFAULT_STRATEGY as DEFAULT_TENANT_LABELS
from observability.tenants import parse_strategy
from tenants.ratelimit import RateLimitPolicy, policy_problem

_DAY_SECONDS = 24 * 60 * 60


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(env: dict[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _seconds_list(env: dict[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = (env.get(name) or "").strip()
    if raw == "":
        return default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise SettingsError(f"{name} must be comma-separated seconds, got {raw!r}") from exc
    if any(value <= 0 for value in values):
        raise SettingsError(f"{name} must list positive seconds, got {raw!r}")
    return values


def _secret_key(env: dict[str, str]) -> str | None:
    key = _str(env, "SCIM_SECRET_KEY")
    if key is not None and len(key) < _MIN_SECRET_KEY:
        raise SettingsError(f"SCIM_SECRET_KEY must be at least {_MIN_SECRET_KEY} characters")
    return key


def _pool_wait(env: dict[str, str]) -> float:
    raw = _str(env, "SCIM_POOL_WAIT_SECONDS")
    if raw is None:
        return Settings.pool_wait_seconds
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"SCIM_POOL_WAIT_SECONDS must be a number, got {raw!r}") from exc
    if not 0 < value <= 60:
        raise SettingsError(f"SCIM_POOL_WAIT_SECONDS must be above 0 and at most 60, got {raw}")
    return value


DEFAULT_RATE_LIMIT: Final = RateLimitPolicy(per_second=50, burst=100, concurrency=10)


def _rate_limit_defaults(env: dict[str, str]) -> RateLimitPolicy:
    policy = RateLimitPolicy(
        per_second=_int(env, "SCIM_RATE_LIMIT_PER_SECOND", DEFAULT_RATE_LIMIT.per_second),
        burst=_int(env, "SCIM_RATE_LIMIT_BURST", DEFAULT_RATE_LIMIT.burst),
        concurrency=_int(env, "SCIM_RATE_LIMIT_CONCURRENCY", DEFAULT_RATE_LIMIT.concurrency),
    )
    problem = policy_problem(policy)
    if problem is not None:
        raise SettingsError(f"SCIM_RATE_LIMIT_*: {problem}")
    return policy


def _redis_failure(env: dict[str, str]) -> str:
    mode = (_str(env, "SCIM_RATE_LIMIT_REDIS_FAILURE") or "open").lower()
    if mode not in ("open", "closed"):
        raise SettingsError(f"SCIM_RATE_LIMIT_REDIS_FAILURE must be open or closed, got {mode}")
    return mode


def _tenant_labels(env: dict[str, str]) -> str:
    raw = _str(env, "SCIM_METRICS_TENANT_LABELS") or DEFAULT_TENANT_LABELS
    try:
        parse_strategy(raw)
    except ValueError as exc:
        raise SettingsError(f"SCIM_METRICS_TENANT_LABELS: {exc}") from exc
    return raw


_MIN_SECRET_KEY = 32
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MAX_PORT = 65535


def _str(env: dict[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def _port(env: dict[str, str]) -> int:
    port = _int(env, "SCIM_PORT", 8000, minimum=0)
    if port > _MAX_PORT:
        raise SettingsError(f"SCIM_PORT must be at most {_MAX_PORT}, got {port}")
    return port


def _log_level(env: dict[str, str]) -> str:
    level = (_str(env, "SCIM_LOG_LEVEL") or "INFO").upper()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"SCIM_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {level}")
    return level


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment.

    Each field names its variable in the README's configuration table.
    """

    database_url: str | None = None
    """`DATABASE_URL`: an external PostgreSQL; unset means the embedded server."""
    data_dir: Path = Path(".data")
    """`SCIM_DATA_DIR`: where the embedded PostgreSQL keeps its files."""
    admin_token: str | None = None
    """`SCIM_ADMIN_TOKEN`: bearer token of the operator admin API."""
    host: str = "127.0.0.1"
    """`SCIM_HOST`"""
    port: int = 8000
    """`SCIM_PORT`"""
    public_url: str | None = None
    """`SCIM_PUBLIC_URL`: base URL customers reach, e.g. behind a proxy."""
    db_pool_min: int = 2
    """`SCIM_DB_POOL_MIN`"""
    db_pool_max: int = 20
    """`SCIM_DB_POOL_MAX`"""
    max_body_bytes: int = 1_048_576
    """`SCIM_MAX_BODY_BYTES`: larger request bodies get 413."""
    token_rotation_grace_seconds: int = _DAY_SECONDS
    """`SCIM_TOKEN_ROTATION_GRACE_SECONDS`: how long a rotated token keeps working."""
    auth_cache_seconds: int = 30
    """`SCIM_AUTH_CACHE_SECONDS`: how long a verified token or tenant is cached in memory."""
    last_used_flush_seconds: int = 60
    """`SCIM_LAST_USED_FLUSH_SECONDS`: how often token last-used times are written."""
    migrate_concurrency: int = 4
    """`SCIM_MIGRATE_CONCURRENCY`: tenants migrated at once by `migrate`."""
    spare_schemas: int = 4
    """`SCIM_SPARE_SCHEMAS`: tenant schemas `serve` keeps made ahead, so onboarding
    runs no DDL (`tenants.spares`); 0 makes each at onboarding."""
    workers: int = 1
    """`SCIM_WORKERS`: `serve` processes sharing the port (each with its own pool and caches)."""
    max_page_size: int = 1000
    """`SCIM_MAX_PAGE_SIZE`: the largest `count` a list request gets."""
    rate_limit: RateLimitPolicy = DEFAULT_RATE_LIMIT
    """`SCIM_RATE_LIMIT_PER_SECOND`, `_BURST`, `_CONCURRENCY`: each tenant's default limits."""
    redis_url: str | None = None
    """`REDIS_URL`: share rate limits between replicas through Redis; unset: per process."""
    rate_limit_redis_failure: str = "open"
    """`SCIM_RATE_LIMIT_REDIS_FAILURE`: Redis down: `open` serves unlimited, `closed` 503s."""
    pool_wait_seconds: float = 2.0
    """`SCIM_POOL_WAIT_SECONDS`: how long a SCIM request waits for database capacity, then 503."""
    log_level: str = "INFO"
    """`SCIM_LOG_LEVEL`"""
    metrics_tenant_labels: str = DEFAULT_TENANT_LABELS
    """`SCIM_METRICS_TENANT_LABELS`: which tenants get their own metric label
    (`top:N`, `allow:slug,slug`, `all`, `none`; see `observability.tenants`)."""
    events_enabled: bool = True
    """`SCIM_EVENTS_ENABLED`: whether SCIM writes record events (and so webhooks)."""
    event_retention_days: int = 30
    """`SCIM_EVENT_RETENTION_DAYS`: events and finished deliveries older than this are purged."""
    secret_key: str | None = None
    """`SCIM_SECRET_KEY`: the key webhook signing secrets are encrypted with at rest."""
    webhook_timeout_seconds: float = 10.0
    """`SCIM_WEBHOOK_TIMEOUT_SECONDS`: how long one delivery attempt may take."""
    webhook_concurrency: int = 8
    """`SCIM_WEBHOOK_CONCURRENCY`: deliveries in flight at once, per worker."""
    webhook_retry_schedule: tuple[float, ...] = (
        5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800
    )  # fmt: skip
    """`SCIM_WEBHOOK_RETRY_SECONDS`: delays before each retry; after the last, dead letter."""
    worker_poll_seconds: float = 2.0
    """`SCIM_WORKER_POLL_SECONDS`: how often the worker looks for due retries."""
    webhook_sweep_seconds: float = 60.0
    """`SCIM_WEBHOOK_SWEEP_SECONDS`: how often the worker looks for events a lost
    notification left uncopied (at most this long late after a lost `NOTIFY`)."""
    worker_in_process: bool = True
    """`SCIM_WORKER_IN_PROCESS`: `serve` runs the webhook worker in the same process."""
    request_log_enabled: bool = True
    """`SCIM_REQUEST_LOG_ENABLED`: record every tenant SCIM request in its request log."""
    request_log_retention_days: int = 14
    """`SCIM_REQUEST_LOG_RETENTION_DAYS`: logged requests older than this are purged."""
    request_log_mask: tuple[str, ...] = ()
    """`SCIM_REQUEST_LOG_MASK`: attribute paths (PII) masked in logged bodies and filters."""
    request_log_body_max_bytes: int = 65_536
    """`SCIM_REQUEST_LOG_BODY_MAX_BYTES`: longer logged bodies are cut and marked truncated."""
    request_log_buffer: int = 10_000
    """`SCIM_REQUEST_LOG_BUFFER`: requests held for writing; beyond it new ones are dropped."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        pool_min = _int(env, "SCIM_DB_POOL_MIN", cls.db_pool_min, minimum=1)
        pool_max = _int(env, "SCIM_DB_POOL_MAX", cls.db_pool_max, minimum=1)
        if pool_max < pool_min:
            raise SettingsError("SCIM_DB_POOL_MAX must not be below SCIM_DB_POOL_MIN")
        public_url = _str(env, "SCIM_PUBLIC_URL")
        return cls(
            database_url=_str(env, "DATABASE_URL"),
            data_dir=Path(_str(env, "SCIM_DATA_DIR") or cls.data_dir),
            admin_token=_str(env, "SCIM_ADMIN_TOKEN"),
            host=_str(env, "SCIM_HOST") or cls.host,
            port=_port(env),
            public_url=public_url.rstrip("/") if public_url else None,
            db_pool_min=pool_min,
            db_pool_max=pool_max,
            max_body_bytes=_int(env, "SCIM_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            token_rotation_grace_seconds=_int(
                env, "SCIM_TOKEN_ROTATION_GRACE_SECONDS", cls.token_rotation_grace_seconds
            ),
            auth_cache_seconds=_int(env, "SCIM_AUTH_CACHE_SECONDS", cls.auth_cache_seconds),
            last_used_flush_seconds=_int(
                env, "SCIM_LAST_USED_FLUSH_SECONDS", cls.last_used_flush_seconds, minimum=1
            ),
            migrate_concurrency=_int(
                env, "SCIM_MIGRATE_CONCURRENCY", cls.migrate_concurrency, minimum=1
            ),
            spare_schemas=_int(env, "SCIM_SPARE_SCHEMAS", cls.spare_schemas),
            workers=_int(env, "SCIM_WORKERS", cls.workers, minimum=1),
            max_page_size=_int(env, "SCIM_MAX_PAGE_SIZE", cls.max_page_size, minimum=1),
            rate_limit=_rate_limit_defaults(env),
            redis_url=_str(env, "REDIS_URL"),
            rate_limit_redis_failure=_redis_failure(env),
            pool_wait_seconds=_pool_wait(env),
            log_level=_log_level(env),
            metrics_tenant_labels=_tenant_labels(env),
            events_enabled=_bool(env, "SCIM_EVENTS_ENABLED", cls.events_enabled),
            event_retention_days=_int(
                env, "SCIM_EVENT_RETENTION_DAYS", cls.event_retention_days, minimum=1
            ),
            secret_key=_secret_key(env),
            webhook_timeout_seconds=float(
                _int(
                    env, "SCIM_WEBHOOK_TIMEOUT_SECONDS", int(cls.webhook_timeout_seconds), minimum=1
                )
            ),
            webhook_concurrency=_int(
                env, "SCIM_WEBHOOK_CONCURRENCY", cls.webhook_concurrency, minimum=1
            ),
            webhook_retry_schedule=_seconds_list(
                env, "SCIM_WEBHOOK_RETRY_SECONDS", cls.webhook_retry_schedule
            ),
            worker_poll_seconds=float(
                _int(env, "SCIM_WORKER_POLL_SECONDS", int(cls.worker_poll_seconds), minimum=1)
            ),
            webhook_sweep_seconds=float(
                _int(env, "SCIM_WEBHOOK_SWEEP_SECONDS", int(cls.webhook_sweep_seconds), minimum=1)
            ),
            worker_in_process=_bool(env, "SCIM_WORKER_IN_PROCESS", cls.worker_in_process),
            request_log_enabled=_bool(env, "SCIM_REQUEST_LOG_ENABLED", cls.request_log_enabled),
            request_log_retention_days=_int(
                env, "SCIM_REQUEST_LOG_RETENTION_DAYS", cls.request_log_retention_days, minimum=1
            ),
            request_log_mask=tuple(
                part.strip()
                for part in (env.get("SCIM_REQUEST_LOG_MASK") or "").split(",")
                if part.strip()
            ),
            request_log_body_max_bytes=_int(
                env, "SCIM_REQUEST_LOG_BODY_MAX_BYTES", cls.request_log_body_max_bytes, minimum=1024
            ),
            request_log_buffer=_int(
                env, "SCIM_REQUEST_LOG_BUFFER", cls.request_log_buffer, minimum=1
            ),
        )

    def base_url(self) -> str:
        """The URL customers use, without a trailing slash."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        if ":" in host:  # an IPv6 literal needs brackets in a URL
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def tenant_scim_url(self, slug: str) -> str:
        return f"{self.base_url()}/scim/v2/{slug}"
