"""The process's database connections: a shared pool, and tenant shards for SCIM requests.

Every tenant's SQL names its own schema, so each connection that serves a
tenant builds that tenant's statements, plans and catalog entries in its
PostgreSQL backend, and asyncpg keeps a per-connection cache of prepared
statements (100). With one pool of 20 connections per process, traffic spread
over many tenants met a cold connection almost every time: measured over 100
tenants (2 workers, 40 connections), 98% of lookups were planned afresh at
0.7 ms each, PostgreSQL spent 1.08 ms and the service 1.83 ms of CPU per
lookup, and the backends grew to 4 GB: 542 lookups/s. Split into shards, each
tenant served by its home shard (a stable hash of its schema): 1,084 lookups/s
(a first cut with 4 shards and no shared pool: 34% planned afresh, 0.43 ms of
PostgreSQL and 1.28 ms of service CPU per lookup).

A request leases a shard for its whole length: the home shard while it has a
connection not leased, otherwise the shard with the most room, so a busy
tenant spreads over every shard instead of queueing behind its own. The
rate limiter admits at most `capacity` SCIM requests per process and each
holds at most one connection at a time, so an admitted request always finds
its shard with room and never waits for a connection.

The shared pool serves everything else: the control plane (Piccolo), token
checks, the admin API, health checks, the request log, event announcements
and webhooks. Being separate, it keeps connections for them however busy
the SCIM traffic is. Below `MIN_SHARDED` connections there is one pool for
everything, and one connection is still kept out of SCIM's reach by the
rate limiter's capacity.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from service.postgres import Pool, create_pool

MIN_SHARDED: Final = 4
"""The smallest `SCIM_DB_POOL_MAX` split into a shared pool and tenant shards."""
SHARD_SIZE: Final = 4
"""Connections per tenant shard: as many shards as this fits into the tenant connections
(at least one), any remainder shared out among them."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How a process's connections are split: sizes of the shared pool and of each shard."""

    shared: int
    shards: tuple[int, ...]
    """Empty: the shared pool serves the tenants too."""

    @classmethod
    def of(cls, max_size: int) -> Layout:
        if max_size < MIN_SHARDED:
            return cls(max_size, ())
        shared = 1 if max_size < 2 * SHARD_SIZE else 2
        tenants = max_size - shared
        count = max(1, tenants // SHARD_SIZE)
        return cls(shared, tuple(tenants // count + (i < tenants % count) for i in range(count)))

    @property
    def capacity(self) -> int:
        """SCIM requests a process admits at once: one connection each."""
        return sum(self.shards) if self.shards else max(1, self.shared - 1)


def _minimums(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` connections kept open, filling the pools in order."""
    out = []
    for size in sizes:
        out.append(min(size, total))
        total -= out[-1]
    return out


class TenantPools:
    """The pools a tenant's SCIM requests lease a connection pool from."""

    def __init__(self, shards: Sequence[Pool], *, owned: bool = True) -> None:
        self._shards = tuple(shards)
        self._leased = [0] * len(self._shards)
        self._owned = owned

    @property
    def shards(self) -> tuple[Pool, ...]:
        return self._shards

    @property
    def own(self) -> tuple[Pool, ...]:
        """The shards this opened (none when the shared pool serves the tenants)."""
        return self._shards if self._owned else ()

    def home(self, schema: str) -> int:
        """The shard that serves ``schema`` whenever it has room; stable across processes."""
        return zlib.crc32(schema.encode()) % len(self._shards)

    def _choose(self, schema: str) -> int:
        home = self.home(schema)
        if self._leased[home] < self._shards[home].get_max_size():
            return home
        room = [
            pool.get_max_size() - leased
            for pool, leased in zip(self._shards, self._leased, strict=True)
        ]
        best = max(range(len(room)), key=room.__getitem__)
        return best if room[best] > 0 else home

    @asynccontextmanager
    async def lease(self, schema: str) -> AsyncIterator[Pool]:
        """The pool to serve one request of the tenant at ``schema`` from, for the request."""
        index = self._choose(schema)
        self._leased[index] += 1
        try:
            yield self._shards[index]
        finally:
            self._leased[index] -= 1

    async def close(self) -> None:
        """Close the shards (not the shared pool, when that is what serves the tenants)."""
        for pool in self.own:
            await pool.close()


async def open_tenant_pools(
    dsn: str, shared: Pool, layout: Layout, *, min_size: int, **options: Any
) -> TenantPools:
    """The tenant shards of ``layout`` (the shared pool itself when it has none).

    ``min_size`` counts every connection of the process; the shared pool's come first.
    """
    if not layout.shards:
        return TenantPools([shared], owned=False)
    minimums = _minimums(max(0, min_size - layout.shared), layout.shards)
    shards = []
    try:
        for size, minimum in zip(layout.shards, minimums, strict=True):
            shards.append(await create_pool(dsn, min_size=minimum, max_size=size, **options))
    except BaseException:
        for pool in shards:
            await pool.close()
        raise
    return TenantPools(shards)
