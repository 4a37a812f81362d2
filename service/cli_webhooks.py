"""`scim-platform worker` and `scim-platform webhooks ...`: delivery outside `serve`, and replay.

Wired into `service.cli`; each command talks to the database directly, like
the others, and `webhooks` commands accept `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from service.cli_output import emit
from service.settings import Settings

COMMANDS = ("webhooks", "worker")


def add_parsers(commands: Any) -> None:
    """Add the commands to the `scim-platform` sub-command parser."""
    commands.add_parser(
        "worker",
        help="deliver webhooks and purge old events, without serving HTTP "
        "(for SCIM_WORKER_IN_PROCESS=false deployments)",
    )
    webhooks = commands.add_parser("webhooks", help="webhook endpoints and their deliveries")
    actions = webhooks.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="endpoints (of one tenant with --tenant)")
    listing.add_argument("--tenant", metavar="SLUG")
    deliveries = actions.add_parser("deliveries", help="an endpoint's recent deliveries")
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--status", choices=("pending", "delivered", "dead"))
    deliveries.add_argument("--limit", type=int, default=50)
    replay = actions.add_parser("replay", help="send dead-lettered deliveries again")
    replay.add_argument("endpoint_id")
    replay.add_argument("--delivery", metavar="ID", help="only this delivery")
    for parser in actions.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def handler(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    if args.command == "worker":
        return lambda ctx: _run_worker(settings)

    async def run(ctx: Any) -> None:
        from service.webhooks.endpoints import WebhookStore
        from service.webhooks.runtime import secret_box

        store = WebhookStore(ctx.pool, secret_box(settings))
        if args.action == "list":
            endpoints = await store.endpoints(args.tenant)
            emit(
                endpoints,
                args.json,
                "\n".join(
                    f"{e.id}  {e.tenant or '(all tenants)'}  {e.url}  "
                    f"{','.join(e.events) if e.events else 'all events'}"
                    for e in endpoints
                )
                or "no webhook endpoints",
            )
        elif args.action == "deliveries":
            found = await store.deliveries(args.endpoint_id, status=args.status, limit=args.limit)
            emit(
                found,
                args.json,
                "\n".join(
                    f"{d.id}  {d.tenant}  #{d.sequence}  {d.event_type}  {d.status}  "
                    f"attempts={d.attempts}  {d.last_error or ''}".rstrip()
                    for d in found
                )
                or "no deliveries",
            )
        elif args.action == "replay":
            count = await store.replay(args.endpoint_id, delivery_id=args.delivery)
            emit({"replayed": count}, args.json, f"{count} dead-lettered delivery(ies) queued")

    return run


async def _run_worker(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM; a delivery cut short is sent again later (at-least-once)."""
    from service.postgres import create_pool
    from service.webhooks.runtime import secret_box
    from service.webhooks.worker import WebhookWorker

    assert settings.database_url is not None
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    worker = WebhookWorker(pool, settings, secret_box(settings), dsn=settings.database_url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await worker.start()
    print("webhook worker running; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        await stopping.wait()
    finally:
        await worker.stop()
        await pool.close()
