"""`scim-platform policy|mapping|purge`: a tenant's provisioning policy from the command line.

Wired into `service.cli`; each command talks to the database directly, like
the others, and accepts `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from service.cli_output import emit
from tenants.errors import InvalidInput
from tenants.policies import DEPROVISION_MODES, LINK_MODES, PolicyChanges, PolicyStore

COMMANDS = ("policy", "mapping", "purge")


def add_parsers(commands: Any) -> None:
    """Add the commands to the `scim-platform` sub-command parser."""
    policy = commands.add_parser("policy", help="a tenant's linking and deprovisioning policy")
    actions = policy.add_subparsers(dest="action", required=True)
    actions.add_parser("show", help="the tenant's policy").add_argument("slug")
    change = actions.add_parser("set", help="change the policy; options not given stay")
    change.add_argument("slug")
    change.add_argument("--link-mode", choices=LINK_MODES)
    change.add_argument(
        "--match-order", metavar="KEYS", help="comma-separated: externalId,userName,email"
    )
    change.add_argument("--deprovision", choices=DEPROVISION_MODES)
    change.add_argument("--retention-days", type=int, metavar="DAYS")

    mapping = commands.add_parser("mapping", help="a tenant's attribute mapping")
    mapping_actions = mapping.add_subparsers(dest="action", required=True)
    mapping_actions.add_parser("show", help="the tenant's mapping").add_argument("slug")
    replace = mapping_actions.add_parser("set", help="replace the mapping with a JSON file")
    replace.add_argument("slug")
    replace.add_argument("file", help='{"field": "SCIM attribute path", ...}; "-" for stdin')

    purge = commands.add_parser(
        "purge", help="delete soft-deleted users past their tenant's retention period"
    )
    purge.add_argument("slug", nargs="?", help="only this tenant (default: every tenant)")

    for parser in (*actions.choices.values(), *mapping_actions.choices.values(), purge):
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _read_mapping(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the mapping from {path}: {exc}") from exc


def handler(args: argparse.Namespace) -> Callable[[Any], Awaitable[None]]:
    """The coroutine `service.cli` runs with its context (`ctx.pool`)."""

    async def run(ctx: Any) -> None:
        store = PolicyStore(ctx.pool)
        if args.command == "purge":
            from service.deprovisioning import purge_all

            purged = await purge_all(ctx.pool, args.slug)
            text = "\n".join(f"{slug}: {n} purged" for slug, n in purged.items())
            emit(purged, args.json, text or "no tenants")
        elif args.command == "mapping":
            if args.action == "set":
                await store.set_mapping(args.slug, _read_mapping(args.file))
            mapping = await store.mapping(args.slug)
            text = "\n".join(f"{field} <- {source}" for field, source in mapping.items())
            emit(mapping, args.json, text or "no mapping")
        else:
            if args.action == "set":
                changes = PolicyChanges()
                if args.link_mode is not None:
                    changes.link_mode = args.link_mode
                if args.match_order is not None:
                    changes.match_order = [k.strip() for k in args.match_order.split(",")]
                if args.deprovision is not None:
                    changes.deprovision_mode = args.deprovision
                if args.retention_days is not None:
                    changes.retention_days = args.retention_days
                await store.update(args.slug, changes)
            view = await store.view(args.slug)
            emit(
                view,
                args.json,
                f"link_mode:        {view.link_mode}\n"
                f"match_order:      {', '.join(view.match_order)}\n"
                f"deprovision_mode: {view.deprovision_mode}\n"
                f"retention_days:   {view.retention_days}",
            )

    return run
