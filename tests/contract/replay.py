"""Replaying a recorded IdP conversation (data/*.json) against a tenant, step by step.

A recording lists requests in the order the IdP sends them, with its
``user_agent`` and, where the IdP does not send `application/scim+json`, its
``content_type``. Strings may hold
``{name}``: a value bound earlier (``"save": "alice"`` binds the id the
response returned) or ``{random}``, a fresh GUID. Each step's ``expect``
checks the outcome, not only the status:

* ``status``: the HTTP status;
* the checks below read the response body or, when it has none (a group
  PATCH answers 204, as Microsoft documents), the resource as a GET returns it;
* ``totalResults``: of a ListResponse;
* ``json``: a subset of the response body (objects may have more keys, lists
  must match element by element);
* ``members``: the names of exactly the group's members;
* ``absent``: top-level keys the body must not have.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.support.application import TenantHandle

DATA = Path(__file__).parent / "data"


def recordings() -> list[Path]:
    return sorted(DATA.glob("*.json"))


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, bound in names.items():
            value = value.replace("{" + name + "}", bound)
        return value
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    return value


def assert_subset(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, item in expected.items():
            assert key in actual, f"{where}: missing {key!r} in {actual!r}"
            assert_subset(item, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: expected {expected!r}, got {actual!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, got, f"{where}[{index}]")
    else:
        assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


async def replay(tenant: TenantHandle, recording: dict[str, Any]) -> dict[str, str]:
    """Run every step; returns the names bound on the way."""
    names = {"random": str(uuid.uuid4())}
    flag = recording.get("tenant_url_query") or ""
    headers = tenant.auth() | {"User-Agent": recording["user_agent"]}
    if "content_type" in recording:
        headers["Content-Type"] = recording["content_type"]
    for number, step in enumerate(recording["steps"], 1):
        where = f"step {number} ({step['step']}): {step['method']} {step['path']}"
        url = tenant.scim + fill(step["path"], names)
        if flag:
            url += ("&" if "?" in url else "?") + flag
        body = fill(step.get("body"), names)
        response = await tenant.client.request(
            step["method"],
            url,
            content=None if body is None else json.dumps(body).encode(),
            headers=headers,
        )
        expect = step["expect"]
        assert response.status_code == expect["status"], f"{where}: {response.text}"
        payload: Any = response.json() if response.content else {}
        if response.status_code == 204 and step["method"] == "PATCH":
            current = await tenant.client.get(url, headers=headers)
            payload = current.json()
        if "totalResults" in expect:
            assert payload["totalResults"] == expect["totalResults"], f"{where}: {payload}"
        if "json" in expect:
            assert_subset(fill(expect["json"], names), payload, where)
        if "members" in expect:
            got = sorted(m["value"] for m in payload.get("members", []))
            assert got == sorted(names[n] for n in expect["members"]), f"{where}: {payload}"
        for key in expect.get("absent", []):
            assert key not in payload, f"{where}: {key!r} must not be returned"
        if "save" in step:
            names[step["save"]] = payload["id"]
    return names


def load(path: Path) -> dict[str, Any]:
    recording: dict[str, Any] = json.loads(path.read_text())
    return recording
