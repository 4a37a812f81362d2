"""The settings of events, webhooks and the worker."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.events_enabled is True
    assert settings.event_retention_days == 30
    assert settings.secret_key is None
    assert settings.webhook_retry_schedule[:3] == (5, 30, 120)
    assert settings.worker_in_process is True
    assert settings.webhook_sweep_seconds == 60.0


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "SCIM_EVENTS_ENABLED": "false",
            "SCIM_EVENT_RETENTION_DAYS": "7",
            "SCIM_SECRET_KEY": "s" * 40,
            "SCIM_WEBHOOK_TIMEOUT_SECONDS": "3",
            "SCIM_WEBHOOK_CONCURRENCY": "2",
            "SCIM_WEBHOOK_RETRY_SECONDS": "1, 2.5,60",
            "SCIM_WORKER_POLL_SECONDS": "5",
            "SCIM_WEBHOOK_SWEEP_SECONDS": "15",
            "SCIM_WORKER_IN_PROCESS": "no",
        }
    )
    assert settings.events_enabled is False
    assert settings.event_retention_days == 7
    assert settings.secret_key == "s" * 40
    assert settings.webhook_timeout_seconds == 3.0
    assert settings.webhook_concurrency == 2
    assert settings.webhook_retry_schedule == (1.0, 2.5, 60.0)
    assert settings.worker_poll_seconds == 5.0
    assert settings.webhook_sweep_seconds == 15.0
    assert settings.worker_in_process is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCIM_EVENTS_ENABLED", "maybe"),
        ("SCIM_EVENT_RETENTION_DAYS", "0"),
        ("SCIM_SECRET_KEY", "too-short"),
        ("SCIM_WEBHOOK_RETRY_SECONDS", "5,soon"),
        ("SCIM_WEBHOOK_RETRY_SECONDS", "5,-1"),
        ("SCIM_WEBHOOK_CONCURRENCY", "0"),
        ("SCIM_WEBHOOK_SWEEP_SECONDS", "0"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
