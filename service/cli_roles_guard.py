"""`scim-platform roles|guard`: role mappings and the mass-deprovisioning guard.

Wired into `service.cli`; each command talks to the database directly, like
the others, and accepts `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from service import guard, roles
from service.cli_output import emit
from service.guard import GuardChanges, GuardView
from service.settings import Settings
from tenants.errors import InvalidInput
from tenants.role_mappings import RoleMappingBody, RoleMappingView

COMMANDS = ("roles", "guard")


def add_parsers(commands: Any) -> None:
    """Add the commands to the `scim-platform` sub-command parser."""
    role_parser = commands.add_parser("roles", help="a tenant's group-to-role mapping")
    role_actions = role_parser.add_subparsers(dest="action", required=True)
    role_actions.add_parser("show", help="the tenant's role mapping").add_argument("slug")
    replace = role_actions.add_parser(
        "set", help="replace the mapping with a JSON file; users' roles are recomputed"
    )
    replace.add_argument("slug")
    replace.add_argument(
        "file",
        help='{"default_roles": [...], "groups": [{"match": "displayName"|"externalId", '
        '"value": ..., "roles": [...]}]}; "-" for stdin',
    )
    role_actions.add_parser("clear", help="remove the mapping").add_argument("slug")
    user = role_actions.add_parser("user", help="a user's effective roles")
    user.add_argument("slug")
    user.add_argument("user_id")

    guard_parser = commands.add_parser("guard", help="the mass-deprovisioning guard")
    guard_actions = guard_parser.add_subparsers(dest="action", required=True)
    guard_actions.add_parser("show", help="settings, window, held events").add_argument("slug")
    change = guard_actions.add_parser(
        "set", help="change the settings; options left out go back to the defaults"
    )
    change.add_argument("slug")
    change.add_argument("--enabled", choices=("true", "false"))
    change.add_argument("--threshold-percent", type=int, metavar="P")
    change.add_argument("--window-seconds", type=int, metavar="S")
    change.add_argument("--min-users", type=int, metavar="N")
    for action, text in (
        ("release", "deliver the held events, in order"),
        ("discard", "drop the held events; the product never learns of them"),
    ):
        guard_actions.add_parser(action, help=text).add_argument("slug")

    for parser in (*role_actions.choices.values(), *guard_actions.choices.values()):
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _read_mapping(path: str) -> RoleMappingBody:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        return msgspec.convert(json.loads(text), RoleMappingBody)
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"cannot read the role mapping from {path}: {exc}") from exc


def _mapping_text(mapping: RoleMappingView) -> str:
    lines = [f"default roles: {', '.join(mapping.default_roles) or '-'}"]
    lines += [f"{rule.match} {rule.value!r} -> {', '.join(rule.roles)}" for rule in mapping.groups]
    return "\n".join(lines)


def _guard_text(view: GuardView) -> str:
    s = view.settings
    held = ", ".join(f"{n} {kind}" for kind, n in sorted(view.held_by_type.items()))
    return "\n".join(
        [
            f"enabled:     {str(s.enabled).lower()}",
            f"threshold:   more than {s.threshold_percent}% of active users "
            f"within {s.window_seconds} s (tenants of {s.min_users}+ users)",
            f"window:      {view.window_deprovisions} deprovisioned of {view.window_users} "
            f"since {view.window_started_at or '-'}",
            f"holding:     {'since ' + str(view.tripped_at) if view.holding else 'no'}",
            f"held:        {view.held_events} events of {view.held_users} users"
            + (f" ({held})" if held else ""),
        ]
    )


def handler(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    """The coroutine `service.cli` runs with its context (`ctx.pool`)."""

    async def run(ctx: Any) -> None:
        if args.command == "roles":
            await _roles(ctx.pool, args, settings)
        else:
            await _guard(ctx.pool, args)

    return run


async def _roles(pool: Any, args: argparse.Namespace, settings: Settings) -> None:
    if args.action == "user":
        user_id, found = await roles.of_user(pool, args.slug, args.user_id)
        text = "no role mapping" if found is None else ", ".join(found) or "no roles"
        emit({"user_id": str(user_id), "roles": found}, args.json, text)
        return
    if args.action in ("set", "clear"):
        body = _read_mapping(args.file) if args.action == "set" else None
        mapping, changed = await roles.set_mapping(
            pool, args.slug, body, record_events=settings.events_enabled
        )
        emit(
            {"mapping": mapping, "roles_changed": changed},
            args.json,
            _mapping_text(mapping) + f"\n{changed} users' roles changed",
        )
        return
    mapping = await roles.show(pool, args.slug)
    emit(mapping, args.json, _mapping_text(mapping))


async def _guard(pool: Any, args: argparse.Namespace) -> None:
    if args.action in ("release", "discard"):
        releasing = args.action == "release"
        count = await (guard.release if releasing else guard.discard)(pool, args.slug)
        done = "released" if releasing else "discarded"
        emit({done: count}, args.json, f"{count} held events {done}")
        return
    if args.action == "set":
        changes = GuardChanges(
            enabled=None if args.enabled is None else args.enabled == "true",
            threshold_percent=args.threshold_percent,
            window_seconds=args.window_seconds,
            min_users=args.min_users,
        )
        view = await guard.configure(pool, args.slug, changes)
    else:
        view = await guard.show(pool, args.slug)
    emit(view, args.json, _guard_text(view))
