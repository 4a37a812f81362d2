"""Names of tenant schemas: derived from the tenant's immutable id, never from user input."""

from __future__ import annotations

import re
import uuid

_SCHEMA_NAME = re.compile(r"t_[0-9a-f]{32}")

EMAIL_VALUES = "scim_control.user_email_values"
"""The lower-cased `emails.value`s of a user's resource: every tenant's email index is on it."""


class InvalidSchemaName(ValueError):
    pass


def schema_name_for(tenant_id: uuid.UUID) -> str:
    return f"t_{tenant_id.hex}"


def quoted_schema(name: str) -> str:
    """The schema as a SQL identifier, after checking it is one we generated.

    Every statement that names a tenant schema goes through here, so a schema
    name that did not come from `schema_name_for` can never reach SQL.
    """
    if not _SCHEMA_NAME.fullmatch(name):
        raise InvalidSchemaName(f"not a tenant schema name: {name!r}")
    return f'"{name}"'
