"""Contract tests run against the same application and database as the integration tests."""

from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    app,
    client,
    db,
    settings,
    tenant,
)
