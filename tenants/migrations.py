"""Versioned DDL of a tenant's schema, and the fan-out that upgrades every tenant.

Each tenant records the version its schema is at (`scim_control.tenants.
schema_version`). Upgrading one tenant locks its control row, so two
migrators never upgrade the same tenant at once, and applies each pending
step in one transaction with the version bump: a step is all or nothing.
A tenant at an older version keeps being served until it is upgraded, so a
step must only add what older code does not rely on the absence of.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from service.postgres import Connection, Pool
from tenants import notifications
from tenants.schemas import quoted_schema


@dataclass(frozen=True, slots=True)
class TenantMigration:
    version: int
    description: str
    sql: str
    """DDL with `{schema}` where the quoted tenant schema goes, `{name}` where its bare name."""
    fresh: str | None = None
    """The step as a schema being created runs it (`new_schema_script`), where that differs:
    a table built in the shape a later step gives it, where that step's change of the
    (empty) table would cost onboarding more. Tests require both ways to build one schema."""

    def ddl(self, schema: str, *, fresh: bool = False) -> str:
        sql = self.fresh if fresh and self.fresh is not None else self.sql
        return sql.format(schema=quoted_schema(schema), name=schema)


_EMAIL_VALUES_COLUMN = (
    "email_values text[] GENERATED ALWAYS AS (scim_control.user_email_values(resource)) STORED"
)
_EMAIL_VALUES_INDEX = """
        CREATE INDEX users_email_values_idx ON {schema}.users USING gin (email_values)
            WITH (fastupdate = off);
"""
_USERS_END = "\n        );\n        -- userName is unique"
_USERS_CREATED = "CREATE INDEX users_created_idx ON {schema}.users (created, id)"
_USERS_CREATED_VISIBLE = f"{_USERS_CREATED} INCLUDE (managed, deleted_at);"


def _fresh_step_1(step_1: str) -> str:
    """Step 1 as a new schema runs it: users created with step 11's column (added to a
    table, a stored column rewrites it and rebuilds every index, 5-7 ms of a new
    tenant's onboarding), the index of creation order left to step 12."""
    for part in (_USERS_END, f"{_USERS_CREATED};"):
        if step_1.count(part) != 1:
            raise ValueError(f"step 1 no longer has {part!r} once")
    return step_1.replace(_USERS_END, f",\n            {_EMAIL_VALUES_COLUMN}{_USERS_END}").replace(
        f"{_USERS_CREATED};", ""
    )


_STEP_1 = """
        CREATE TABLE {schema}.users (
            id uuid PRIMARY KEY,
            user_name text NOT NULL,
            external_id text,
            display_name text,
            active boolean NOT NULL DEFAULT true,
            resource jsonb NOT NULL,
            version bigint NOT NULL DEFAULT 1,
            created timestamptz NOT NULL DEFAULT now(),
            last_modified timestamptz NOT NULL DEFAULT now()
        );
        -- userName is unique per tenant, case-insensitively (RFC 7643 section 4.1.1).
        CREATE UNIQUE INDEX users_user_name_key ON {schema}.users (lower(user_name));
        CREATE INDEX users_external_id_idx ON {schema}.users (external_id);
        CREATE INDEX users_created_idx ON {schema}.users (created, id);

        CREATE TABLE {schema}.groups (
            id uuid PRIMARY KEY,
            display_name text NOT NULL,
            external_id text,
            resource jsonb NOT NULL,
            version bigint NOT NULL DEFAULT 1,
            created timestamptz NOT NULL DEFAULT now(),
            last_modified timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX groups_display_name_idx ON {schema}.groups (lower(display_name));
        CREATE INDEX groups_external_id_idx ON {schema}.groups (external_id);
        CREATE INDEX groups_created_idx ON {schema}.groups (created, id);

        -- One row per membership, so a group of 100,000 members is 100,000
        -- small rows, not one huge document rewritten on every change.
        CREATE TABLE {schema}.group_members (
            group_id uuid NOT NULL REFERENCES {schema}.groups (id) ON DELETE CASCADE,
            member_id uuid NOT NULL,
            member_type text NOT NULL CHECK (member_type IN ('User', 'Group')),
            PRIMARY KEY (group_id, member_id)
        );
        CREATE INDEX group_members_member_idx ON {schema}.group_members (member_id);
        """

TENANT_MIGRATIONS: tuple[TenantMigration, ...] = (
    TenantMigration(
        1,
        "users, groups, one row per group membership, versions",
        _STEP_1,
        fresh=_fresh_step_1(_STEP_1),
    ),
    TenantMigration(
        2,
        "indexes for IdP lookups by emails.value and by user displayName",
        """
        -- Entra and Okta look users up by email: step 10 builds an expression
        -- index over the lower-cased addresses, on the function all tenants
        -- share. This step built it on this tenant's own function, which
        -- releases before step 10 still call; it now answers with the shared one.
        CREATE FUNCTION {schema}.email_values(resource jsonb) RETURNS text[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT scim_control.user_email_values(resource) $$;
        CREATE INDEX users_display_name_idx ON {schema}.users (lower(display_name));
        """,
    ),
    TenantMigration(
        3,
        "the event outbox: one row per committed change, numbered without gaps",
        """
        -- A counter row, not a sequence: the UPDATE that takes the next numbers
        -- holds the row lock until commit, so numbers are handed out in commit
        -- order and a rolled-back change gives its numbers back. A reader that
        -- has seen N can ask for `sequence > N` and never skip a later commit.
        CREATE TABLE {schema}.event_sequence (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            last bigint NOT NULL
        );
        INSERT INTO {schema}.event_sequence (last) VALUES (0);
        CREATE TABLE {schema}.events (
            sequence bigint PRIMARY KEY,
            id uuid NOT NULL UNIQUE,
            type text NOT NULL,
            resource_type text NOT NULL,
            resource_id uuid NOT NULL,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            data jsonb NOT NULL,
            previous jsonb
        );
        -- Append-only and in time order: a BRIN index serves the retention purge
        -- at almost no cost per insert.
        CREATE INDEX events_occurred_at_idx ON {schema}.events USING brin (occurred_at);
        """,
    ),
    TenantMigration(
        4,
        "password hashes, pre-loaded and soft-deleted users, the audit of linked users",
        """
        -- A salted scrypt hash of the write-only SCIM password; never the password.
        ALTER TABLE {schema}.users ADD COLUMN password_hash text;
        -- false: pre-loaded by the operator and not yet claimed by the IdP, so
        -- invisible over SCIM until a POST links it.
        ALTER TABLE {schema}.users ADD COLUMN managed boolean NOT NULL DEFAULT true;
        -- Set by a DELETE the deprovisioning policy keeps the data for; the
        -- groups it was in are kept so nothing is lost before the purge.
        ALTER TABLE {schema}.users ADD COLUMN deleted_at timestamptz;
        ALTER TABLE {schema}.users ADD COLUMN deleted_groups uuid[];
        CREATE INDEX users_deleted_at_idx ON {schema}.users (deleted_at)
            WHERE deleted_at IS NOT NULL;

        CREATE TABLE {schema}.user_links (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id uuid NOT NULL,
            kind text NOT NULL CHECK (kind IN ('linked', 'restored')),
            matched_by text NOT NULL,
            matched_value text NOT NULL,
            client text NOT NULL,
            user_agent text,
            linked_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX user_links_user_idx ON {schema}.user_links (user_id);
        """,
    ),
    TenantMigration(
        5,
        "the provisioning request log",
        """
        -- One row per SCIM request, written in batches by service.request_log;
        -- bodies are stored with secrets and configured PII already masked.
        CREATE TABLE {schema}.requests (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at timestamptz NOT NULL,
            client text,
            user_agent text,
            method text NOT NULL,
            path text NOT NULL,
            query text,
            operation text NOT NULL,
            resource_id text,
            status smallint NOT NULL,
            scim_type text,
            detail text,
            latency_ms real NOT NULL,
            trace_id text,
            body text,
            body_bytes integer NOT NULL DEFAULT 0,
            body_truncated boolean NOT NULL DEFAULT false
        );
        -- Newest first, paged by (received_at, id); the status index serves
        -- `status=4xx` searches and the time index the retention purge.
        CREATE INDEX requests_received_idx ON {schema}.requests (received_at, id);
        CREATE INDEX requests_status_idx ON {schema}.requests (status, received_at, id);
        CREATE INDEX requests_resource_idx ON {schema}.requests (resource_id)
            WHERE resource_id IS NOT NULL;
        """,
    ),
    TenantMigration(
        6,
        "effective roles of users, events held by the mass-deprovisioning guard",
        """
        -- Each user's effective roles as last reported in an event, kept only
        -- while the tenant has a role mapping: a change compares against this
        -- row to know whether to emit user.roles_changed. No foreign key, so
        -- writing it never locks the user row another write may hold.
        CREATE TABLE {schema}.user_roles (
            user_id uuid PRIMARY KEY,
            roles text[] NOT NULL
        );
        -- Events the guard keeps out of the outbox until an operator releases
        -- (appended to the outbox in `position` order) or discards them.
        CREATE TABLE {schema}.held_events (
            position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id uuid NOT NULL UNIQUE,
            user_id uuid NOT NULL,
            type text NOT NULL,
            resource_type text NOT NULL,
            resource_id uuid NOT NULL,
            occurred_at timestamptz NOT NULL DEFAULT now(),
            data jsonb NOT NULL,
            previous jsonb
        );
        CREATE INDEX held_events_user_idx ON {schema}.held_events (user_id);
        """,
    ),
    TenantMigration(
        7,
        "an index of nested group memberships",
        """
        -- A user's indirect groups are found by climbing from group to parent
        -- group; only memberships of groups lead anywhere. Indexed apart, the
        -- climb is an index probe on a (usually empty) index, where the
        -- planner would otherwise scan every membership of the tenant on each
        -- rendered user (it does below some thousands of rows).
        CREATE INDEX group_members_nested_idx ON {schema}.group_members (member_id)
            WHERE member_type = 'Group';
        """,
    ),
    TenantMigration(
        8,
        "events numbered as their transaction commits",
        """
        -- An event inserted without a number gets it from a deferred trigger,
        -- which runs as its transaction commits: the counter row is then held
        -- only through the commit, not from the event's insert through a round
        -- trip to the service and back, during which every other write of the
        -- tenant waited. Numbers stay gapless and in commit order. An event
        -- inserted with its number (taken the older way) keeps it.
        ALTER TABLE {schema}.events DROP CONSTRAINT events_pkey;
        ALTER TABLE {schema}.events ALTER COLUMN sequence DROP NOT NULL;
        CREATE UNIQUE INDEX events_sequence_key ON {schema}.events (sequence);
        -- Named for its tenant: PostgreSQL looks a function named in DDL up
        -- among all functions of that name, and creating a tenant names this one.
        CREATE FUNCTION {schema}.number_event_{name}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                taken bigint;
            BEGIN
                UPDATE {schema}.event_sequence SET last = last + 1 RETURNING last INTO taken;
                UPDATE {schema}.events SET sequence = taken WHERE id = NEW.id;
                RETURN NULL;
            END
            $$;
        CREATE CONSTRAINT TRIGGER events_number_at_commit AFTER INSERT ON {schema}.events
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.sequence IS NULL)
            EXECUTE FUNCTION {schema}.number_event_{name}();
        """,
    ),
    TenantMigration(
        9,
        "an index of hidden users",
        """
        -- Every IdP create asks whether a hidden (pre-loaded or soft-deleted)
        -- user matches it (`service.store.lifecycle`). Hidden users are few, so
        -- the question reads this (usually empty) index. Without it PostgreSQL
        -- combined the userName, externalId and email indexes of every user,
        -- 0.3 ms per create at 5,000 users (the email index's pending list),
        -- and planned the write's state query afresh on each create.
        CREATE INDEX users_hidden_idx ON {schema}.users (id)
            WHERE NOT (managed AND deleted_at IS NULL);
        """,
    ),
    TenantMigration(
        10,
        "the email index on the function all tenants share",
        """
        -- `scim_control.user_email_values` (control-plane migration of 23 Nov,
        -- 12:00) computes what `email_values` did; SQL naming a function every
        -- tenant has a copy of made PostgreSQL read all the copies' catalog rows
        -- whenever a function had been created since (each tenant created
        -- does). Same index name, so queries and plans read the same way.
        DROP INDEX IF EXISTS {schema}.users_email_values_idx;
        CREATE INDEX users_email_values_idx ON {schema}.users
            USING gin (scim_control.user_email_values(resource));
        """,
        fresh="",  # step 11 replaces the index
    ),
    TenantMigration(
        11,
        "users' email addresses a stored column, indexed without a pending list",
        """
        -- An index over an expression of `resource` made every change of the
        -- document touch every index of users: PostgreSQL updates a row in
        -- place (HOT), without new index entries, only when no indexed column
        -- changed, and it cannot tell that the addresses the expression reads
        -- stayed the same. Stored, they are recomputed by every write (the
        -- same function), and a PATCH that leaves them alone is a HOT update.
        -- GIN's fast update is off: it queued new entries in a pending list
        -- that every email lookup read through in full, and that the insert
        -- finding it full merged while its client waited; a user has an
        -- address or two, entered at once for what queueing them cost.
        DROP INDEX {schema}.users_email_values_idx;
        ALTER TABLE {schema}.users ADD COLUMN """
        + _EMAIL_VALUES_COLUMN
        + ";"
        + _EMAIL_VALUES_INDEX,
        fresh=_EMAIL_VALUES_INDEX,  # step 1 created the column
    ),
    TenantMigration(
        12,
        "the index of users' creation order answers which are visible",
        """
        -- An IdP importing every user pages through them in creation order
        -- (`service.store.paging`): with whether each is visible over SCIM in
        -- the index, the page's ids and the total come from it alone, without
        -- reading every user's row up to the page.
        DROP INDEX {schema}.users_created_idx;
        """
        + _USERS_CREATED_VISIBLE,
        fresh=_USERS_CREATED_VISIBLE,  # step 1 left it out
    ),
)

LATEST_VERSION = TENANT_MIGRATIONS[-1].version


def new_schema_script(schema: str) -> str:
    """DDL creating a tenant's schema at `LATEST_VERSION`: every migration in order (in
    its `fresh` form), one script.

    A new tenant's schema is built in one round trip, inside the transaction that
    registers the tenant (with `schema_version` = `LATEST_VERSION`); stepping
    through the migrations one transaction each is for schemas that already exist.
    """
    steps = (migration.ddl(schema, fresh=True) for migration in TENANT_MIGRATIONS)
    return "\n".join([f"CREATE SCHEMA {quoted_schema(schema)};", *steps])


async def apply_pending(conn: Connection, tenant_id: uuid.UUID) -> int:
    """Bring one existing tenant's schema to the latest version; returns the steps applied.

    Each step gets its own transaction (a savepoint inside a caller's).
    """
    applied = 0
    for migration in TENANT_MIGRATIONS:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT schema_name, schema_version FROM scim_control.tenants "
                "WHERE id = $1 FOR UPDATE",
                tenant_id,
            )
            if row is None:  # deleted while we were migrating others
                return applied
            if row["schema_version"] >= migration.version:
                continue
            await conn.execute(migration.ddl(row["schema_name"]))
            await conn.execute(
                "UPDATE scim_control.tenants SET schema_version = $2 WHERE id = $1",
                tenant_id,
                migration.version,
            )
            # Processes cache the version with the tenant, and some SQL depends on it.
            await notifications.notify_tenant_changed(conn, tenant_id)
            applied += 1
    return applied


@dataclass(slots=True)
class MigrationReport:
    tenants: int = 0
    upgraded: int = 0
    steps: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """slug -> error, for tenants whose upgrade failed (others go on)."""


ProgressCallback = Callable[[int, int], None]


async def migrate_all(
    pool: Pool, *, concurrency: int, progress: ProgressCallback | None = None
) -> MigrationReport:
    """Upgrade every tenant below the latest version, ``concurrency`` at a time."""
    rows = await pool.fetch(
        "SELECT id, slug FROM scim_control.tenants WHERE schema_version < $1 ORDER BY created_at",
        LATEST_VERSION,
    )
    report = MigrationReport(tenants=len(rows))
    done = 0
    if progress:
        progress(done, report.tenants)
    semaphore = asyncio.Semaphore(concurrency)

    async def upgrade(tenant_id: uuid.UUID, slug: str) -> None:
        nonlocal done
        async with semaphore, pool.acquire() as conn:
            try:
                steps = await apply_pending(conn, tenant_id)
            except Exception as exc:
                report.failed[slug] = f"{type(exc).__name__}: {exc}"
            else:
                report.steps += steps
                report.upgraded += 1 if steps else 0
        done += 1
        if progress:
            progress(done, report.tenants)

    await asyncio.gather(*(upgrade(row["id"], row["slug"]) for row in rows))
    return report
