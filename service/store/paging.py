"""Filtered, sorted, index-paged lists (SCIM `filter`, `sortBy`, `startIndex`, `count`)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from service.postgres import Pool
from service.scim.filter import Filter
from service.store.filters import SqlBuilder, Target, compile_filter, names_few, order_by

RESOURCE_COLUMNS = "r.id, r.resource, r.created, r.last_modified, r.version"


@dataclass(frozen=True, slots=True)
class ListQuery:
    filter: Filter | None = None
    sort_by: str | None = None
    descending: bool = False
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class PageStatements:
    """What a page of a list takes: its rows, each carrying the total number of
    matches, and the count alone (for `count=0`, or a page past the last match).
    ``params`` are the rows statement's; the count takes all but the last two
    (the offset and the limit)."""

    rows: str
    count: str
    params: tuple[object, ...]

    @property
    def count_params(self) -> tuple[object, ...]:
        return self.params[:-2]


def page_statements(
    target: Target,
    table: str,
    query: ListQuery,
    *,
    visible: str = "TRUE",
    related: str | None = None,
) -> PageStatements:
    """The SQL of one page (see `page`).

    ``table`` is schema-qualified and quoted by the caller. Without `sortBy`
    resources come in creation order, so pages are stable while the IdP walks
    them. The total rides along on the page's rows (a window count, or a count
    of its own), so the usual IdP lookup (one match or none) costs one round
    trip. Only rows satisfying `visible` (SQL over `r`) are listed. ``related``,
    SQL over the page's row `r`, becomes each row's `related` column: it is
    computed for the rows of the page only, not for every match the count runs
    over.

    A page whose filter names few resources (`filters.names_few`: an IdP's
    lookup) reads its matches once, whole, counting them as it goes. An
    unfiltered one (an IdP importing every user, page after page) finds the
    page's ids and the total from the index of creation order alone, then reads
    only the page's rows: counting and skipping whole rows, documents and all,
    took 150-190 ms a page at 100,000 users (the count spilled them to disk),
    8-15 ms this way. Any other filter (`active eq true`, `userName sw "a"`,
    `title eq "CEO"`, which may match a few users or all of them) is evaluated
    once, its matches counted as they are found but carried to the page by id,
    and only the page's rows read: whole, `active eq true` over 100,000 users
    took 160-170 ms a page, 45-47 ms by id. (Counting apart, as an unfiltered
    page does, would evaluate the filter twice and walk the index of creation
    order to find a rare match: 130 ms for one user by `title`, 38 ms in one
    pass.)
    """
    builder = SqlBuilder()
    where = compile_filter(target, query.filter, builder) if query.filter else "TRUE"
    where = f"({visible}) AND ({where})"
    order = (
        order_by(target, query.sort_by, query.descending) if query.sort_by else "r.created, r.id"
    )
    count = f"SELECT count(*) FROM {table} r WHERE {where}"
    offset, limit = builder.bind(query.offset), builder.bind(query.limit)
    matches = f"FROM {table} r WHERE {where} ORDER BY {order} OFFSET {offset} LIMIT {limit}"
    with_related = "" if related is None else f", {related} AS related"
    # `order` ends in `r.id`: sorted again over the page's rows, they keep its order.
    if query.filter is None:
        # Counted apart, in the index of creation order alone.
        rows = (
            f"SELECT {RESOURCE_COLUMNS}, ({count}) AS total{with_related} FROM "
            f"(SELECT r.id {matches}) p JOIN {table} r ON r.id = p.id ORDER BY {order}"
        )
    elif not names_few(target, query.filter):
        # Counted as the matches are found, once, but each carried to the end as its id.
        rows = (
            f"SELECT {RESOURCE_COLUMNS}, p.total{with_related} FROM "
            f"(SELECT r.id, count(*) OVER () AS total {matches}) p "
            f"JOIN {table} r ON r.id = p.id ORDER BY {order}"
        )
    elif related is None:
        rows = f"SELECT {RESOURCE_COLUMNS}, count(*) OVER () AS total {matches}"
    else:
        # The page's rows are numbered so the statement around them keeps their order.
        rows = (
            f"SELECT r.*{with_related} FROM (SELECT {RESOURCE_COLUMNS}, "
            f"count(*) OVER () AS total, row_number() OVER (ORDER BY {order}) AS position "
            f"{matches}) r ORDER BY r.position"
        )
    return PageStatements(rows, count, tuple(builder.params))


async def page(
    pool: Pool, statements: PageStatements, query: ListQuery
) -> tuple[int, list[asyncpg.Record]]:
    """One page of ``query``, by its `page_statements`, and the total number of matches."""
    if query.limit == 0:
        total: int = await pool.fetchval(statements.count, *statements.count_params)
        return total, []
    rows = await pool.fetch(statements.rows, *statements.params)
    if rows:
        return rows[0]["total"], rows
    if query.offset == 0:
        return 0, []
    total = await pool.fetchval(statements.count, *statements.count_params)
    return total, []
