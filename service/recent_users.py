"""The users this process last read or wrote, for a write to guess what it changes.

IdPs read a user before they change it: Entra ID looks it up by its
`userName` to compare it with the source, Okta and JumpCloud read it by id or
filter before their PUT; and they change one user several times in a row.
The change then read the user again, with its state, in a statement of its
own (`service.provisioning._change_user_unlocked`). With the user as this
process last saw it, the change's statement can try the update itself, at
the version seen: it takes effect only if the user is still at that version,
and when it is not, the same statement has read the user as the change would
have, so a wrong guess costs no round trip.

Small and short-lived (`LIMIT` users, `MAX_AGE_SECONDS` each), and taken once:
the write that takes a user notes what it stored. Each user's resource is
kept encoded, a fraction of its decoded size, and so never shared with a
caller that might change it. Nothing here is trusted: the version check is
the database's.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

import asyncpg
import msgspec

LIMIT: Final = 2048
"""Users kept per process: about 2 MB, their resources encoded."""
MAX_AGE_SECONDS: Final = 60.0
"""How long after a read or a write its user may still be guessed at."""


class _Seen(NamedTuple):
    at: float
    version: int
    created: datetime
    last_modified: datetime
    resource: bytes


_seen: OrderedDict[tuple[str, uuid.UUID], _Seen] = OrderedDict()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def note(schema: str, row: asyncpg.Record | Mapping[str, Any]) -> None:
    """A user of the tenant schema ``schema`` as read or stored: a row with `id`,
    `resource`, `created`, `last_modified` and `version`."""
    key = (schema, row["id"])
    _seen.pop(key, None)
    _seen[key] = _Seen(
        time.monotonic(),
        row["version"],
        row["created"],
        row["last_modified"],
        _encode(row["resource"]),
    )
    if len(_seen) > LIMIT:
        _seen.popitem(last=False)


def take(schema: str, user_id: uuid.UUID) -> dict[str, Any] | None:
    """The user as last noted, as a row of `note`'s columns, and forgotten; None if it
    was not noted in the last `MAX_AGE_SECONDS`."""
    seen = _seen.pop((schema, user_id), None)
    if seen is None or time.monotonic() - seen.at > MAX_AGE_SECONDS:
        return None
    return {
        "id": user_id,
        "resource": _decode(seen.resource),
        "created": seen.created,
        "last_modified": seen.last_modified,
        "version": seen.version,
    }
