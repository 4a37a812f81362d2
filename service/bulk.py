"""`POST /Bulk` (RFC 7644 section 3.7): many operations in one request.

Each operation is its own transaction, as the RFC describes: a failed one
changes nothing and the others go on, until `failOnErrors` errors have been
seen. `bulkId:` references, in a path or anywhere in `data`, are resolved to
the ids the referenced POSTs created; an operation whose reference is not
created yet waits until it is, so the order of operations in the request
does not matter, and references that can never resolve (cycles, typos)
fail with 409.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from service import provisioning
from service.postgres import Pool
from service.provisioning import Scope
from service.scim.errors import ScimError, invalid_syntax
from service.store.resources import GROUPS, USERS, Table

log = logging.getLogger(__name__)

BULK_REQUEST: Final = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE: Final = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
MAX_OPERATIONS: Final = 1000
_PREFIX: Final = "bulkId:"
_TABLES: Final = {"users": USERS, "groups": GROUPS}
_METHODS: Final = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(slots=True)
class _Operation:
    index: int
    method: str
    path: str
    bulk_id: str | None
    version: str | None
    data: Any


def _parse(body: Any) -> tuple[list[_Operation], int | None]:
    if not isinstance(body, dict) or BULK_REQUEST not in (body.get("schemas") or []):
        raise invalid_syntax(f"a bulk request must be an object listing {BULK_REQUEST}")
    raw_operations = body.get("Operations")
    if not isinstance(raw_operations, list) or not raw_operations:
        raise invalid_syntax("Operations must be a non-empty list")
    if len(raw_operations) > MAX_OPERATIONS:
        raise ScimError(413, f"at most {MAX_OPERATIONS} operations per bulk request")
    fail_on_errors = body.get("failOnErrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool) or not isinstance(fail_on_errors, int)
    ):
        raise invalid_syntax("failOnErrors must be an integer")
    operations = []
    for index, raw in enumerate(raw_operations):
        if not isinstance(raw, dict):
            raise invalid_syntax(f"operation {index} must be an object")
        method = str(raw.get("method", "")).upper()
        path = raw.get("path")
        if method not in _METHODS or not isinstance(path, str):
            raise invalid_syntax(
                f"operation {index} needs a method ({', '.join(_METHODS)}) and a path"
            )
        bulk_id = raw.get("bulkId")
        if method == "POST" and not isinstance(bulk_id, str):
            raise invalid_syntax(f"operation {index}: a POST needs a bulkId")
        operations.append(
            _Operation(
                index,
                method,
                path,
                bulk_id if isinstance(bulk_id, str) else None,
                raw.get("version"),
                raw.get("data"),
            )
        )
    return operations, fail_on_errors


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value[len(_PREFIX) :]} if value.startswith(_PREFIX) else set()
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_references(item) for item in value.values())) if value else set()
    return set()


def _substitute(value: Any, created: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith(_PREFIX):
        return created[value[len(_PREFIX) :]]
    if isinstance(value, list):
        return [_substitute(item, created) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, created) for key, item in value.items()}
    return value


def _path_references(path: str) -> set[str]:
    """`/Users/bulkId:qwerty` refers to the user the operation with bulkId qwerty created."""
    return _references(path.rsplit("/", 1)[-1])


def _substitute_path(path: str, created: dict[str, str]) -> str:
    head, separator, last = path.rpartition("/")
    return f"{head}{separator}{_substitute(last, created)}"


def _target(path: str, method: str) -> tuple[Table, str | None]:
    parts = path.strip("/").split("/")
    table = _TABLES.get(parts[0].lower()) if parts else None
    if table is None or len(parts) > 2:
        raise invalid_syntax(f"unknown bulk path {path!r}: use /Users[/id] or /Groups[/id]")
    resource_id = parts[1] if len(parts) == 2 else None
    if (method == "POST") != (resource_id is None):
        raise invalid_syntax(f"{method} {path}: POST takes a collection, the others an id")
    return table, resource_id


async def _run_one(
    pool: Pool, scope: Scope, operation: _Operation, path: str, data: Any
) -> dict[str, Any]:
    table, resource_id = _target(path, operation.method)
    result: dict[str, Any] = {"method": operation.method}
    if operation.bulk_id is not None:
        result["bulkId"] = operation.bulk_id
    if operation.method == "POST":
        body = await provisioning.create(pool, table, scope, data)
        status = 201
    elif operation.method == "DELETE":
        assert resource_id is not None
        await provisioning.delete(pool, table, scope, resource_id, if_match=operation.version)
        location = f"{scope.base_url}{table.resource_type.endpoint}/{resource_id}"
        result.update(status="204", location=location)
        return result
    else:
        assert resource_id is not None
        change = provisioning.replace if operation.method == "PUT" else provisioning.apply_patch
        body = await change(pool, table, scope, resource_id, data, if_match=operation.version)
        status = 200
    result.update(
        status=str(status), location=body["meta"]["location"], version=body["meta"]["version"]
    )
    return result


def _failure(operation: _Operation, error: ScimError) -> dict[str, Any]:
    result: dict[str, Any] = {"method": operation.method, "status": str(error.status)}
    if operation.bulk_id is not None:
        result["bulkId"] = operation.bulk_id
    result["response"] = error.body()
    return result


async def run_bulk(pool: Pool, scope: Scope, body: Any) -> dict[str, Any]:
    operations, fail_on_errors = _parse(body)
    results: dict[int, dict[str, Any]] = {}
    created: dict[str, str] = {}
    errors = 0
    pending = list(operations)
    while pending:
        ready = [
            op
            for op in pending
            if (_references(op.data) | _path_references(op.path)) <= created.keys()
        ]
        if not ready:
            break
        for operation in ready:
            pending.remove(operation)
            try:
                path = _substitute_path(operation.path, created)
                data = _substitute(operation.data, created)
                result = await _run_one(pool, scope, operation, path, data)
            except ScimError as error:
                result = _failure(operation, error)
                errors += 1
            results[operation.index] = result
            if operation.method == "POST" and result["status"] == "201":
                assert operation.bulk_id is not None
                created[operation.bulk_id] = result["location"].rsplit("/", 1)[1]
            if fail_on_errors is not None and errors >= fail_on_errors:
                pending.clear()
                break
    for operation in pending:
        results[operation.index] = _failure(
            operation,
            ScimError(409, "a bulkId this operation refers to was never created", "invalidValue"),
        )
    return {
        "schemas": [BULK_RESPONSE],
        "Operations": [results[index] for index in sorted(results)],
    }
