"""`serve`'s process options and what every worker process is built from."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from observability.logging import JsonFormatter, configure_logging
from observability.setup import Telemetry
from service import serving
from service.app import create_app
from service.settings import Settings, SettingsError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    serving.add_arguments(parser)
    return parser.parse_args(argv)


def test_workers_come_from_the_option_or_scim_workers() -> None:
    assert parse("--workers", "2").workers == 2
    assert parse().workers is None
    assert Settings.from_env({"SCIM_WORKERS": "3"}).workers == 3
    assert Settings.from_env({}).workers == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentError):
            parse("--workers", bad)
    with pytest.raises(SettingsError):
        Settings.from_env({"SCIM_WORKERS": "0"})


def test_workers_see_what_serve_decided_for_the_run() -> None:
    settings = dataclasses.replace(
        Settings(),
        database_url="postgresql://db/scim",
        admin_token="scimadm_generated",
        secret_key="k" * 32,
        port=8123,
        workers=2,
    )
    assert serving._worker_environment(settings) == {
        "SCIM_HOST": "127.0.0.1",
        "SCIM_PORT": "8123",
        "SCIM_WORKERS": "2",
        "DATABASE_URL": "postgresql://db/scim",
        "SCIM_ADMIN_TOKEN": "scimadm_generated",
        "SCIM_SECRET_KEY": "k" * 32,
    }


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


@pytest.mark.usefixtures("root_handlers")
def test_building_the_app_keeps_the_json_redacting_log_handler() -> None:
    configure_logging("INFO")
    ours = logging.getLogger().handlers[:]
    create_app(dataclasses.replace(Settings(), database_url="postgresql://db/scim"), Telemetry())
    # Litestar's default logging config would swap in a queue handler with a plain-text format.
    assert logging.getLogger().handlers == ours
    assert isinstance(ours[0].formatter, JsonFormatter)


def test_a_serving_process_freezes_what_start_up_built_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        serving.tune_garbage_collector()
        assert gc.get_threshold() == serving.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_serving_process_leaves_out_libraries_only_other_commands_use() -> None:
    """Each worker pays in memory for every module it imports; these are several MB
    together and only a webhook delivery or a migration needs them."""
    code = (
        "import sys, service.serving, service.app; "
        "print(' '.join(sorted(m for m in ('httpx', 'rich', 'pygments', 'black') "
        "if m in sys.modules)))"
    )
    loaded = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
