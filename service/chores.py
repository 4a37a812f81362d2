"""Periodic chores one process runs for the whole deployment, at most once a period.

Every serving process and every `scim-platform worker` keeps the timers of the
retention purges, but a purge visits every tenant: run by each process, a
deployment of N processes does N times the database work for nothing (some
10 s of CPU per run at 10,000 tenants). So a process claims a chore before
running it, and of all the claims made in one period only the first wins. A
process that dies in the middle of a chore leaves it to the next period:
retention can wait an hour.
"""

from __future__ import annotations

import uuid
from typing import Final

from service.postgres import Pool

CHECK_SECONDS: Final = 300.0
"""How often a process asks whether a chore is due: a due chore waits at most this long."""


async def claim(pool: Pool, chore: str, every: float, *, holder: uuid.UUID | None = None) -> bool:
    """Whether this process runs ``chore`` now: True for one caller per ``every``
    seconds across the deployment, from the first call on.

    ``holder``: the chore stays with the caller that ran it last for as long as it
    keeps time (it may claim up to half a period early), and another takes it over
    only once it is half a period overdue: for a chore that costs less where it ran
    before (the webhook sweep, whose connection keeps every tenant's catalog
    entries: 0.17 s a sweep at 3,000 tenants there, 1.4 s on a fresh one).
    """
    # Two claims at once: the second waits on the first's row lock, then sees
    # the row it wrote, no longer due.
    claimed: bool | None = await pool.fetchval(
        "INSERT INTO scim_control.chores AS c (name, next_at, holder) "
        "VALUES ($1, now() + make_interval(secs => $2), $3) "
        "ON CONFLICT (name) DO UPDATE SET next_at = excluded.next_at, holder = excluded.holder "
        "WHERE c.next_at <= now() + make_interval(secs => "
        "CASE WHEN c.holder = excluded.holder THEN $4 ELSE -$4::float8 END) RETURNING true",
        chore,
        every,
        holder,
        every / 2 if holder is not None else 0.0,
    )
    return claimed is True
