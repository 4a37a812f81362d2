"""The `scim-platform` command: serve, migrate, tenants and tokens.

Every command talks to the database directly (the one in `DATABASE_URL`, or
the embedded server under `SCIM_DATA_DIR`), so an operator can manage tenants
with or without a running service. Output is for people; `--json` is for
scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from observability.logging import configure_logging
from service import cli_provisioning, cli_roles_guard, cli_webhooks, serving
from service.cli_output import emit
from service.settings import Settings, SettingsError
from tenants.errors import ControlPlaneError, NotFound

if TYPE_CHECKING:
    from observability.setup import Telemetry

DEMO_SLUG = "demo"


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(header)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _tenant_text(tenant: Any) -> str:
    grace = tenant.token_rotation_grace_seconds
    return "\n".join(
        [
            f"slug:        {tenant.slug}",
            f"name:        {tenant.name}",
            f"id:          {tenant.id}",
            f"status:      {tenant.status}",
            f"idp_type:    {tenant.idp_type}",
            f"Tenant URL:  {tenant.scim_url}",
            f"schema:      version {tenant.schema_version}",
            f"token grace: {'default' if grace is None else f'{grace} s'}",
            f"created:     {tenant.created_at:%Y-%m-%d %H:%M:%S %Z}",
        ]
    )


def _token_rows(tokens: Sequence[Any]) -> str:
    return _table(
        [
            (t.id, t.name, t.display_prefix + "…", t.status, t.expires_at, t.last_used_at)
            for t in tokens
        ],
        ("ID", "NAME", "PREFIX", "STATUS", "EXPIRES", "LAST USED"),
    )


def _issued_text(issued: Any) -> str:
    expiry = f"expires {issued.expires_at:%Y-%m-%d %H:%M:%S %Z}" if issued.expires_at else ""
    return (
        f"Secret Token (shown once, store it now):\n\n    {issued.token}\n\n"
        f"id {issued.id}  {expiry}".rstrip()
    )


class ProgressBar:
    """A one-line progress bar on a terminal; periodic plain lines elsewhere (CI logs)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self._label = label
        self._stream = stream
        self._tty = stream.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        if total == 0:
            return
        if self._tty:
            filled = 30 * done // total
            bar = "#" * filled + "." * (30 - filled)
            self._stream.write(f"\r{self._label} [{bar}] {done}/{total}")
            if done == total:
                self._stream.write("\n")
        else:
            decile = 10 * done // total
            if decile != self._last_decile:
                self._last_decile = decile
                self._stream.write(f"{self._label}: {done}/{total}\n")
        self._stream.flush()


async def _with_control_plane(settings: Settings, action: Callable[[Any], Awaitable[None]]) -> None:
    """Open the database, make sure the control plane is migrated, run ``action``."""
    from tenants.control import close_pool, migrate_control_plane, open_pool
    from tenants.registry import TenantRegistry
    from tenants.tokens import TokenStore

    assert settings.database_url is not None
    pool = await open_pool(settings.database_url, min_size=1, max_size=4)
    try:
        await migrate_control_plane(pool)
        registry = TenantRegistry(settings)
        await action(_Context(pool, registry, TokenStore(registry), settings))
    finally:
        await close_pool(pool)


@dataclasses.dataclass(slots=True)
class _Context:
    pool: Any
    registry: Any
    tokens: Any
    settings: Settings


async def _migrate_everything(ctx: _Context, *, as_json: bool, quiet: bool = False) -> None:
    from tenants.migrations import LATEST_VERSION, migrate_all

    progress = None if quiet or as_json else ProgressBar("migrating tenants")
    report = await migrate_all(
        ctx.pool, concurrency=ctx.settings.migrate_concurrency, progress=progress
    )
    if not quiet:
        emit(
            dataclasses.asdict(report) | {"latest_version": LATEST_VERSION},
            as_json,
            lambda: (
                f"control plane up to date; {report.tenants} tenant(s) below version "
                f"{LATEST_VERSION}, {report.upgraded} upgraded ({report.steps} step(s)), "
                f"{len(report.failed)} failed"
                + "".join(f"\n  {slug}: {error}" for slug, error in report.failed.items())
            ),
        )
    if report.failed:
        raise ControlPlaneError(f"{len(report.failed)} tenant(s) failed to migrate")


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    async def run(ctx: _Context) -> None:
        await _migrate_everything(ctx, as_json=args.json)

    return run


def _cmd_tenants(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    from tenants.registry import TenantChanges

    async def run(ctx: _Context) -> None:
        registry = ctx.registry
        if args.action == "create":
            tenant = await registry.create(args.slug, args.name or args.slug, args.idp)
            emit(tenant, args.json, lambda: _tenant_text(tenant))
        elif args.action == "list":
            tenants, _ = await registry.page(search=args.search)
            emit(
                tenants,
                args.json,
                lambda: _table(
                    [(t.slug, t.name, t.status, t.idp_type, t.scim_url) for t in tenants],
                    ("SLUG", "NAME", "STATUS", "IDP", "TENANT URL"),
                ),
            )
        elif args.action == "show":
            tenant = await registry.get(args.slug)
            emit(tenant, args.json, lambda: _tenant_text(tenant))
        elif args.action in ("enable", "disable"):
            tenant = await registry.set_status(args.slug, f"{args.action}d")
            emit(tenant, args.json, lambda: f"tenant {tenant.slug} is {tenant.status}")
        elif args.action == "update":
            changes = TenantChanges()
            if args.name is not None:
                changes.name = args.name
            if args.idp is not None:
                changes.idp_type = args.idp
            if args.token_grace is not None:
                changes.token_rotation_grace_seconds = (
                    None if args.token_grace < 0 else args.token_grace
                )
            tenant = await registry.update(args.slug, changes)
            emit(tenant, args.json, lambda: _tenant_text(tenant))
        elif args.action == "delete":
            await registry.delete(args.slug, confirm=args.confirm)
            emit({"deleted": args.slug}, args.json, lambda: f"tenant {args.slug} deleted")
        elif args.action == "rate-limit":
            await _rate_limit(ctx, args)

    return run


def _rate_limit_text(info: Any) -> str:
    def source(own: int | None) -> str:
        return "(default)" if own is None else "(own)"

    return "\n".join(
        [
            f"tenant:      {info.slug}",
            f"rate:        {info.per_second} per second {source(info.override.per_second)}",
            f"burst:       {info.burst} {source(info.override.burst)}",
            f"concurrency: {info.concurrency} in flight {source(info.override.concurrency)}",
            f"enforced as: {info.burst} requests in any {info.window_seconds} s window",
        ]
    )


async def _rate_limit(ctx: _Context, args: argparse.Namespace) -> None:
    """Show a tenant's rate limits; set them (unset options: the defaults); or --reset."""
    from tenants.ratelimit import RateLimitChanges
    from tenants.ratelimit_store import RateLimitStore

    store = RateLimitStore(ctx.registry, ctx.settings.rate_limit)
    limits = {"per_second": args.per_second, "burst": args.burst, "concurrency": args.concurrency}
    given = {name: value for name, value in limits.items() if value is not None}
    if args.reset and given:
        raise ControlPlaneError("--reset cannot be combined with new limits")
    if args.reset:
        info = await store.reset(args.slug)
    elif given:
        info = await store.set(args.slug, RateLimitChanges(**given))
    else:
        info = await store.get(args.slug)
    emit(info, args.json, lambda: _rate_limit_text(info))


def _cmd_tokens(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    async def run(ctx: _Context) -> None:
        tokens = ctx.tokens
        if args.action == "issue":
            issued = await tokens.issue(
                args.slug, name=args.name, expires_in_seconds=args.expires_in
            )
            emit(issued, args.json, lambda: _issued_text(issued))
        elif args.action == "rotate":
            issued = await tokens.rotate(args.slug, args.token_id, grace_seconds=args.grace)
            emit(issued, args.json, lambda: _issued_text(issued))
        elif args.action == "revoke":
            revoked = await tokens.revoke(args.slug, args.token_id)
            emit(revoked, args.json, lambda: f"token {revoked.id} revoked")
        elif args.action == "list":
            listed = await tokens.list(args.slug)
            emit(listed, args.json, lambda: _token_rows(listed))

    return run


def _cmd_requests(args: argparse.Namespace, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    from datetime import timedelta

    from service.request_log.recorder import purge_expired

    async def run(ctx: _Context) -> None:
        days = settings.request_log_retention_days
        report = await purge_expired(ctx.pool, timedelta(days=days))
        emit(
            dataclasses.asdict(report) | {"retention_days": days},
            args.json,
            lambda: (
                f"purged {report.deleted} logged request(s) older than {days} day(s) "
                f"from {report.tenants} tenant(s)"
            ),
        )

    return run


def _serve(settings: Settings, *, demo: bool, telemetry: Telemetry) -> None:
    from tenants.secrets import ADMIN_TOKEN_PREFIX, generate_secret

    if settings.admin_token is None:
        settings = dataclasses.replace(settings, admin_token=generate_secret(ADMIN_TOKEN_PREFIX))
        admin_note = "generated for this run; set SCIM_ADMIN_TOKEN to keep one"
    else:
        admin_note = "from SCIM_ADMIN_TOKEN"
    if settings.secret_key is None and demo:
        # Webhook secrets sealed with it are unreadable after a restart; production sets one.
        settings = dataclasses.replace(settings, secret_key=secrets.token_urlsafe(32))

    banner: list[str] = []

    async def prepare(ctx: _Context) -> None:
        await _migrate_everything(ctx, as_json=False, quiet=True)
        if not demo:
            return
        try:
            tenant = await ctx.registry.get(DEMO_SLUG)
        except NotFound:
            tenant = await ctx.registry.create(DEMO_SLUG, "Demo tenant", "entra")
        issued = await ctx.tokens.issue(DEMO_SLUG, name="issued by make run")
        banner.extend(
            [
                "",
                "  SCIM platform is starting.",
                "",
                f"  Tenant URL:    {tenant.scim_url}",
                f"  Secret Token:  {issued.token}",
                "",
                f"  Admin token:   {settings.admin_token}   ({admin_note})",
                f"  Admin API:     {settings.base_url()}/admin/v1   (OpenAPI: /schema)",
                f"  Console:       {settings.base_url()}/console   (sign in with the admin token)",
                "",
                f"  Try it:  curl -H 'Authorization: Bearer {issued.token}' \\",
                f"             {tenant.scim_url}/Users",
                "",
            ]
        )

    asyncio.run(_with_control_plane(settings, prepare))
    if banner:
        # Printed, not logged: secrets never go to the logs.
        print("\n".join(banner), flush=True)
    elif settings.admin_token and admin_note.startswith("generated"):
        print(f"Admin token ({admin_note}): {settings.admin_token}", flush=True)
    serving.serve(settings, telemetry)


def _add_feature_parsers(commands: Any) -> None:
    """Commands whose code lives in a module of their own."""
    cli_provisioning.add_parsers(commands)
    cli_webhooks.add_parsers(commands)
    cli_roles_guard.add_parsers(commands)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scim-platform", description="Multi-tenant SCIM 2.0 provisioning platform."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve SCIM and the admin API")
    serving.add_arguments(serve)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="make sure a 'demo' tenant exists and print its URL and a new Secret Token",
    )

    migrate = commands.add_parser("migrate", help="upgrade the control plane and every tenant")
    migrate.add_argument("--json", action="store_true")

    tenants = commands.add_parser("tenants", help="create, list, show, change, delete tenants")
    tenant_actions = tenants.add_subparsers(dest="action", required=True)
    idp_choices = ("generic", "entra", "okta", "onelogin", "google", "jumpcloud")
    create = tenant_actions.add_parser("create", help="create a tenant and its schema")
    create.add_argument("slug")
    create.add_argument("--name", help="display name (default: the slug)")
    create.add_argument("--idp", choices=idp_choices, default="generic")
    tenant_actions.add_parser("list", help="all tenants").add_argument(
        "--search", help="only those whose slug starts with this, or whose name contains it"
    )
    for action in ("show", "enable", "disable"):
        tenant_actions.add_parser(action, help=f"{action} a tenant").add_argument("slug")
    update = tenant_actions.add_parser("update", help="change name, IdP type or settings")
    update.add_argument("slug")
    update.add_argument("--name")
    update.add_argument("--idp", choices=idp_choices)
    update.add_argument(
        "--token-grace",
        type=int,
        metavar="SECONDS",
        help="how long a rotated token keeps working (-1: back to the default)",
    )
    limit = tenant_actions.add_parser(
        "rate-limit", help="show or set a tenant's rate limits (applied without a restart)"
    )
    limit.add_argument("slug")
    limit.add_argument("--per-second", type=int, metavar="N", help="sustained requests a second")
    limit.add_argument("--burst", type=int, metavar="M", help="requests at once; a multiple of N")
    limit.add_argument("--concurrency", type=int, metavar="C", help="requests in flight at once")
    limit.add_argument("--reset", action="store_true", help="back to the service defaults")
    remove = tenant_actions.add_parser("delete", help="drop a tenant and all its data")
    remove.add_argument("slug")
    remove.add_argument("--confirm", metavar="SLUG", help="repeat the slug to confirm")

    tokens = commands.add_parser("tokens", help="issue, rotate, revoke, list Secret Tokens")
    token_actions = tokens.add_subparsers(dest="action", required=True)
    issue = token_actions.add_parser("issue", help="issue a new Secret Token")
    issue.add_argument("slug")
    issue.add_argument("--name", default="")
    issue.add_argument("--expires-in", type=int, metavar="SECONDS")
    rotate = token_actions.add_parser(
        "rotate", help="replace a token, keeping it for a grace period"
    )
    rotate.add_argument("slug")
    rotate.add_argument("token_id")
    rotate.add_argument("--grace", type=int, metavar="SECONDS")
    revoke = token_actions.add_parser("revoke", help="stop a token at once")
    revoke.add_argument("slug")
    revoke.add_argument("token_id")
    token_actions.add_parser("list", help="a tenant's tokens").add_argument("slug")

    requests = commands.add_parser("requests", help="the provisioning request log")
    request_actions = requests.add_subparsers(dest="action", required=True)
    request_actions.add_parser(
        "purge", help="delete logged requests older than SCIM_REQUEST_LOG_RETENTION_DAYS"
    )

    _add_feature_parsers(commands)

    for sub in (tenant_actions, token_actions, request_actions):
        for choice in sub.choices.values():
            choice.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from service.postgres import resolve_database_url

    settings = dataclasses.replace(settings, database_url=resolve_database_url(settings))
    if args.command == "serve":
        settings = dataclasses.replace(
            settings,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=args.workers or settings.workers,
        )
        from observability.setup import Telemetry, TelemetryConfigError

        try:
            # Before migrating: a wrong OTEL_* setting should stop `serve` at once.
            telemetry = Telemetry.from_env(settings.metrics_tenant_labels)
        except TelemetryConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        _serve(settings, demo=args.demo, telemetry=telemetry)
        return 0
    deleting = args.command == "tenants" and args.action == "delete"
    if deleting and args.confirm is None and sys.stdin.isatty():
        args.confirm = input(
            f"This drops tenant {args.slug!r} and all its users and groups.\n"
            "Type the slug to confirm: "
        ).strip()
    handlers = {
        "migrate": _cmd_migrate,
        "tenants": _cmd_tenants,
        "tokens": _cmd_tokens,
        "requests": _cmd_requests,
    }
    if args.command in cli_provisioning.COMMANDS:
        action = cli_provisioning.handler(args)
    elif args.command in cli_webhooks.COMMANDS:
        action = cli_webhooks.handler(args, settings)
    elif args.command in cli_roles_guard.COMMANDS:
        action = cli_roles_guard.handler(args, settings)
    else:
        action = handlers[args.command](args, settings)
    try:
        asyncio.run(_with_control_plane(settings, action))
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
