"""Settings.from_env with an explicit environment: parsing, defaults and validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.settings import Settings, SettingsError

INT_VARIABLES = {
    # variable: (field, minimum)
    "SCIM_PORT": ("port", 0),
    "SCIM_DB_POOL_MIN": ("db_pool_min", 1),
    "SCIM_DB_POOL_MAX": ("db_pool_max", 1),
    "SCIM_MAX_BODY_BYTES": ("max_body_bytes", 1024),
    "SCIM_TOKEN_ROTATION_GRACE_SECONDS": ("token_rotation_grace_seconds", 0),
    "SCIM_AUTH_CACHE_SECONDS": ("auth_cache_seconds", 0),
    "SCIM_LAST_USED_FLUSH_SECONDS": ("last_used_flush_seconds", 1),
    "SCIM_MIGRATE_CONCURRENCY": ("migrate_concurrency", 1),
    "SCIM_SPARE_SCHEMAS": ("spare_schemas", 0),
    "SCIM_MAX_PAGE_SIZE": ("max_page_size", 1),
}


def _env_for(variable: str, raw: str) -> dict[str, str]:
    env = {variable: raw}
    # Keep the pool-size pair consistent so only the variable under test matters.
    if variable == "SCIM_DB_POOL_MIN":
        env["SCIM_DB_POOL_MAX"] = "100000"
    return env


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url is None
    assert settings.data_dir == Path(".data")
    assert settings.admin_token is None
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.public_url is None
    assert settings.db_pool_min == 2
    assert settings.db_pool_max == 20
    assert settings.max_body_bytes == 1_048_576
    assert settings.token_rotation_grace_seconds == 86_400
    assert settings.auth_cache_seconds == 30
    assert settings.last_used_flush_seconds == 60
    assert settings.migrate_concurrency == 4
    assert settings.spare_schemas == 4
    assert settings.max_page_size == 1000
    assert settings.log_level == "INFO"


def test_explicit_environment_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCIM_PORT", "9999")
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-process/db")
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.database_url is None


def test_process_environment_is_read_when_none_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCIM_PORT", "9123")
    assert Settings.from_env().port == 9123


def test_environment_dict_is_not_modified() -> None:
    env = {"SCIM_PORT": "8080", "SCIM_PUBLIC_URL": "https://x.example/"}
    before = dict(env)
    Settings.from_env(env)
    assert env == before


def test_every_variable_is_parsed() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/scim",
            "SCIM_DATA_DIR": "/var/lib/scim",
            "SCIM_ADMIN_TOKEN": "scimadm_secret",
            "SCIM_HOST": "10.1.2.3",
            "SCIM_PORT": "8443",
            "SCIM_PUBLIC_URL": "https://scim.example.com",
            "SCIM_DB_POOL_MIN": "5",
            "SCIM_DB_POOL_MAX": "50",
            "SCIM_MAX_BODY_BYTES": "2048",
            "SCIM_TOKEN_ROTATION_GRACE_SECONDS": "0",
            "SCIM_AUTH_CACHE_SECONDS": "7",
            "SCIM_LAST_USED_FLUSH_SECONDS": "15",
            "SCIM_MIGRATE_CONCURRENCY": "9",
            "SCIM_SPARE_SCHEMAS": "0",
            "SCIM_MAX_PAGE_SIZE": "250",
            "SCIM_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        database_url="postgresql://u:p@db:5432/scim",
        data_dir=Path("/var/lib/scim"),
        admin_token="scimadm_secret",
        host="10.1.2.3",
        port=8443,
        public_url="https://scim.example.com",
        db_pool_min=5,
        db_pool_max=50,
        max_body_bytes=2048,
        token_rotation_grace_seconds=0,
        auth_cache_seconds=7,
        last_used_flush_seconds=15,
        migrate_concurrency=9,
        spare_schemas=0,
        max_page_size=250,
        log_level="DEBUG",
    )


@pytest.mark.parametrize(("variable", "field_and_minimum"), INT_VARIABLES.items())
def test_integer_variable_is_parsed(variable: str, field_and_minimum: tuple[str, int]) -> None:
    field, minimum = field_and_minimum
    value = minimum + 4321
    settings = Settings.from_env(_env_for(variable, f" {value} "))
    assert getattr(settings, field) == value


@pytest.mark.parametrize(("variable", "field_and_minimum"), INT_VARIABLES.items())
def test_integer_variable_accepts_its_minimum(
    variable: str, field_and_minimum: tuple[str, int]
) -> None:
    field, minimum = field_and_minimum
    env = _env_for(variable, str(minimum))
    if variable == "SCIM_DB_POOL_MAX":
        env["SCIM_DB_POOL_MIN"] = str(minimum)
    assert getattr(Settings.from_env(env), field) == minimum


@pytest.mark.parametrize(("variable", "field_and_minimum"), INT_VARIABLES.items())
def test_integer_variable_below_minimum_raises(
    variable: str, field_and_minimum: tuple[str, int]
) -> None:
    _, minimum = field_and_minimum
    with pytest.raises(SettingsError, match=rf"{variable} must be at least {minimum}"):
        Settings.from_env(_env_for(variable, str(minimum - 1)))


@pytest.mark.parametrize("variable", INT_VARIABLES)
@pytest.mark.parametrize("raw", ["abc", "1.5", "8k", "0x10", "--1", "1e3"])
def test_integer_variable_rejects_non_integers(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=rf"{variable} must be an integer"):
        Settings.from_env(_env_for(variable, raw))


@pytest.mark.parametrize("variable", INT_VARIABLES)
@pytest.mark.parametrize("raw", ["", "   "])
def test_blank_integer_variable_means_the_default(variable: str, raw: str) -> None:
    field, _ = INT_VARIABLES[variable]
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == getattr(Settings(), field)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_pool_max_below_pool_min_raises() -> None:
    with pytest.raises(SettingsError, match="SCIM_DB_POOL_MAX"):
        Settings.from_env({"SCIM_DB_POOL_MIN": "10", "SCIM_DB_POOL_MAX": "9"})
    # Also against the other's default.
    with pytest.raises(SettingsError, match="SCIM_DB_POOL_MAX"):
        Settings.from_env({"SCIM_DB_POOL_MIN": "21"})
    with pytest.raises(SettingsError, match="SCIM_DB_POOL_MAX"):
        Settings.from_env({"SCIM_DB_POOL_MAX": "1"})


def test_pool_max_equal_to_min_is_allowed() -> None:
    settings = Settings.from_env({"SCIM_DB_POOL_MIN": "3", "SCIM_DB_POOL_MAX": "3"})
    assert (settings.db_pool_min, settings.db_pool_max) == (3, 3)


@pytest.mark.parametrize(
    "variable",
    ["DATABASE_URL", "SCIM_ADMIN_TOKEN", "SCIM_PUBLIC_URL"],
)
@pytest.mark.parametrize("raw", ["", "   "])
def test_blank_string_variable_means_unset(variable: str, raw: str) -> None:
    settings = Settings.from_env({variable: raw})
    assert settings == Settings()


def test_blank_host_data_dir_and_log_level_mean_the_default() -> None:
    settings = Settings.from_env({"SCIM_HOST": " ", "SCIM_DATA_DIR": "", "SCIM_LOG_LEVEL": "  "})
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == Path(".data")
    assert settings.log_level == "INFO"


def test_string_variables_are_stripped() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "  postgresql://db/scim\n",
            "SCIM_ADMIN_TOKEN": " tok ",
            "SCIM_HOST": " 0.0.0.0 ",
            "SCIM_LOG_LEVEL": " warning ",
        }
    )
    assert settings.database_url == "postgresql://db/scim"
    assert settings.admin_token == "tok"
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.log_level == "WARNING"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://scim.example.com/", "https://scim.example.com"),
        ("https://scim.example.com///", "https://scim.example.com"),
        ("https://example.com/prefix/", "https://example.com/prefix"),
        ("https://example.com/prefix", "https://example.com/prefix"),
        (" https://example.com/ ", "https://example.com"),
    ],
)
def test_public_url_trailing_slash_is_stripped(raw: str, expected: str) -> None:
    settings = Settings.from_env({"SCIM_PUBLIC_URL": raw})
    assert settings.public_url == expected
    assert settings.base_url() == expected
    assert settings.tenant_scim_url("acme") == f"{expected}/scim/v2/acme"


def test_base_url_from_host_and_port() -> None:
    settings = Settings.from_env({"SCIM_HOST": "scim.internal", "SCIM_PORT": "8081"})
    assert settings.base_url() == "http://scim.internal:8081"
    assert settings.tenant_scim_url("acme") == "http://scim.internal:8081/scim/v2/acme"


def test_default_base_url() -> None:
    assert Settings().base_url() == "http://127.0.0.1:8000"
    assert Settings().tenant_scim_url("demo") == "http://127.0.0.1:8000/scim/v2/demo"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])  # noqa: S104 - values under test
def test_wildcard_host_is_shown_as_loopback(wildcard: str) -> None:
    settings = Settings.from_env({"SCIM_HOST": wildcard, "SCIM_PORT": "9000"})
    assert settings.host == wildcard  # still what the server binds to
    assert settings.base_url() == "http://127.0.0.1:9000"
    assert settings.tenant_scim_url("t1") == "http://127.0.0.1:9000/scim/v2/t1"


def test_public_url_wins_over_host_and_port() -> None:
    settings = Settings.from_env(
        {
            "SCIM_HOST": "0.0.0.0",  # noqa: S104 - a value under test, not a bind
            "SCIM_PORT": "9000",
            "SCIM_PUBLIC_URL": "https://scim.example.com/",
        }
    )
    assert settings.base_url() == "https://scim.example.com"
    assert settings.tenant_scim_url("acme") == "https://scim.example.com/scim/v2/acme"


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("level", ["verbose", "trace", "10"])
def test_unknown_log_level_is_a_settings_error(level: str) -> None:
    with pytest.raises(SettingsError, match="SCIM_LOG_LEVEL"):
        Settings.from_env({"SCIM_LOG_LEVEL": level})


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"SCIM_LOG_LEVEL": "warning"}).log_level == "WARNING"


def test_port_above_65535_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="SCIM_PORT"):
        Settings.from_env({"SCIM_PORT": "70000"})
    assert Settings.from_env({"SCIM_PORT": "65535"}).port == 65535


def test_ipv6_host_is_bracketed_in_urls() -> None:
    settings = Settings.from_env({"SCIM_HOST": "::1", "SCIM_PORT": "9000"})
    assert settings.base_url() == "http://[::1]:9000"
    assert settings.tenant_scim_url("acme") == "http://[::1]:9000/scim/v2/acme"
