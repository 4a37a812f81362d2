"""Typed settings read from the environment: the one source of truth for configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    max_page_size: int = 1000
    """`SCIM_MAX_PAGE_SIZE`: the largest `count` a list request gets."""
    log_level: str = "INFO"
    """`SCIM_LOG_LEVEL`"""

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
            max_page_size=_int(env, "SCIM_MAX_PAGE_SIZE", cls.max_page_size, minimum=1),
            log_level=_log_level(env),
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
