"""Database spans: each statement of a traced request that names a table is a child span.

`TracedConnection` is handed to asyncpg as the pool's connection class, so
the SQL modules need no tracing code. A span carries what the statement
does (`db.query.summary`: operation and tables, e.g. ``SELECT users``) and
which tenant schema it touches (`db.namespace`), never the SQL text or its
values. Outside a traced request a statement costs one context-variable read.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Any

import asyncpg
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from observability import attributes as attr
from observability import request_context

_WORD = re.compile(r"[A-Za-z_]+|[()]")
_MAIN_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})
# A row lock (`FOR UPDATE OF r`, `FOR NO KEY UPDATE`) names no table to update, nor
# does an upsert's `ON CONFLICT ... DO UPDATE SET`.
_TABLE = re.compile(
    r"\b(DELETE\s+FROM|FROM|INTO|(?<!FOR )(?<!KEY )(?<!DO )UPDATE|JOIN)\s+"
    r"(?:\"?([A-Za-z_][A-Za-z0-9_]*)\"?\.)?\"?([A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE,
)
_WRITING = frozenset({"INTO", "UPDATE", "DELETE"})
_CALL = re.compile(r"^\s*SELECT\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.IGNORECASE)
_MAX_TABLES = 3
_NOT_TABLES = frozenset({"select", "lateral", "unnest", "only"})


# A `WITH` query's name (with its column list, if any) where it is defined.
_WITH_QUERY = re.compile(
    r"(?:\bWITH(?:\s+RECURSIVE)?|,)\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^()]*\))?\s+AS\s*\(",
    re.IGNORECASE,
)
_MODIFYING = ("INSERT", "UPDATE", "DELETE", "MERGE")


def _operation(words: list[str]) -> str:
    """The verb of a statement; for a `WITH` statement its main statement's, unless that
    only selects what a `WITH` query changed (`WITH written AS (UPDATE ...) SELECT`):
    then the first changing verb, for a write is not reported as a read."""
    operation = words[0].upper() if words else "UNKNOWN"
    if operation != "WITH":
        return operation
    depth = 0
    changing: str | None = None
    for previous, word in itertools.pairwise(words):
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
        elif depth == 1 and previous == "(" and changing is None:
            if word.upper() in _MODIFYING:
                changing = word.upper()
        elif depth == 0 and word.upper() in _MAIN_VERBS:
            main = word.upper()
            return changing if main == "SELECT" and changing is not None else main
    return operation


@lru_cache(maxsize=4096)
def describe(sql: str) -> tuple[str, str, str | None]:
    """(operation, summary, schema) of a statement: low-cardinality, free of values.

    The operation is the statement's verb (see `_operation` for `WITH`); the
    summary names at most three tables, unqualified, and no `WITH` query, those
    it writes first; the schema is the first one the statement names, or
    writes in if it writes: a write that reads the control plane (`WITH state
    AS (SELECT ... FROM scim_control.tenants ...) INSERT ...`) is told by
    what and where it writes.
    """
    operation = _operation(_WORD.findall(sql))
    named = {name.lower() for name in _WITH_QUERY.findall(sql)}
    written: list[tuple[str | None, str]] = []
    read: list[tuple[str | None, str]] = []
    for match in _TABLE.finditer(sql):
        keyword, qualifier, table = match.groups()
        if table.lower() in _NOT_TABLES or (qualifier is None and table.lower() in named):
            continue
        writes = keyword.split()[0].upper() in _WRITING
        (written if writes else read).append((qualifier, table))
    tables: list[str] = []
    for _, table in written + read:
        if table not in tables and len(tables) < _MAX_TABLES:
            tables.append(table)
    schema = next((qualifier for qualifier, _ in written + read if qualifier is not None), None)
    if not tables and (call := _CALL.search(sql)) is not None:
        tables.append(call[1])  # `SELECT pg_notify(...)`: the function says what it does
    summary = " ".join([operation, *tables])
    return operation, summary, schema


@lru_cache(maxsize=4096)
def _span_plan(sql: str) -> tuple[str, dict[str, AttributeValue]] | None:
    """The name and attributes of a statement's span, built once per statement text;
    None for statements that name no schema (see `_traced`)."""
    operation, summary, schema = describe(sql)
    if schema is None:
        return None
    return summary, {
        attr.DB_SYSTEM_NAME: attr.DB_SYSTEM_POSTGRESQL,
        attr.DB_NAMESPACE: schema,
        attr.DB_OPERATION_NAME: operation,
        attr.DB_QUERY_SUMMARY: summary,
    }


class TracedConnection(asyncpg.Connection):
    """An asyncpg connection whose statements are spans when a request is traced."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await _traced(super().execute, query, args, kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        return await _traced(super().executemany, command, (args,), kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await _traced(super().fetch, query, args, kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await _traced(super().fetchrow, query, args, kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await _traced(super().fetchval, query, args, kwargs)


async def _traced(method: Any, query: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    info = request_context.current()
    if info is None or not info.traced or info.telemetry.tracer is None:
        return await method(query, *args, **kwargs)
    plan = _span_plan(query)
    if plan is None:
        # Transaction control, the pool's reset on release, `pg_notify`: no table, no
        # tenant. A span costs about as much to make as to export; these are left out.
        return await method(query, *args, **kwargs)
    summary, attributes = plan
    # The SDK copies the attributes into the span, so one dict serves every execution.
    span = info.telemetry.tracer.start_span(summary, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        return await method(query, *args, **kwargs)
    except BaseException as exc:
        # The class only: a Postgres error message can quote the offending value.
        span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR))
        raise
    finally:
        span.end()
