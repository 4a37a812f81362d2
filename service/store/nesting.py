"""The SQL that walks nested group memberships: up from members to every group they
are in, and down from groups to every user in them.

Its own module because both the stores of groups (`service.store.groups`) and the
filters compiled over users (`service.store.filters`: `groups.value eq "..."`) walk
them, and the first imports the second."""

from __future__ import annotations


def reach(qualified: str, members: str) -> str:
    """`reach(member_id, group_id, depth)`: each group the members chosen by the
    condition ``members`` (over `group_members`) are in, through nesting; the
    statement's `WITH RECURSIVE`, which must come first."""
    direct = f"SELECT member_id, group_id FROM {qualified}.group_members WHERE {members}"
    return f"WITH RECURSIVE {climbing(qualified, direct)} "


def climbing(qualified: str, direct: str) -> str:
    """The recursive `WITH` query `reach(member_id, group_id, depth)`: each group the
    members are in, through nesting, from the memberships (`member_id, group_id`) the
    query ``direct`` gives (the statement's `WITH` must be `RECURSIVE`).

    Only memberships of groups lead further up, and their partial index keeps
    the climb a probe rather than a scan of every membership (tenant migration
    7); the depth bound keeps a membership cycle from recursing forever.
    """
    return (
        "reach(member_id, group_id, depth) AS ("
        f" SELECT member_id, group_id, 1 FROM ({direct}) AS direct"
        " UNION"
        " SELECT r.member_id, m.group_id, r.depth + 1 FROM reach r"
        f" JOIN {qualified}.group_members m"
        " ON m.member_id = r.group_id AND m.member_type = 'Group'"
        " WHERE r.depth < 32)"
    )


def groups_of(qualified: str, member: str) -> str:
    """A query of `id, display_name, depth`: each group the member whose id is the SQL
    expression ``member`` is in, directly (depth 1) or through nesting, once, at its
    nearest depth: a user's `groups` as a response shows them
    (`groups.groups_column`) and as a filter compares them (`filters`).

    Each group reached is read by its key (the `OFFSET 0` keeps the planner from
    joining the groups as a whole): joined, a tenant of a few thousand groups had
    every rendered user's statement hash all of them, the planner counting a
    handful of key probes dearer than one scan (2,000 groups: 148 against 67 us
    a lookup, 12.7 against 4.2 ms a page of 100 users).
    """
    return (
        f"{reach(qualified, f'member_id = {member}')}"
        "SELECT g.id, g.display_name, d.depth"
        " FROM (SELECT group_id, min(depth) AS depth FROM reach GROUP BY group_id) d,"
        f" LATERAL (SELECT g.id, g.display_name FROM {qualified}.groups g"
        " WHERE g.id = d.group_id OFFSET 0) g"
    )


def users_beneath(qualified: str, groups: str) -> str:
    """A query of `id`: each user in the groups the condition ``groups`` (over
    `group_members.group_id`) chooses, directly or through nested groups, once; the
    climb's way down, bounded as it is."""
    return (
        "WITH RECURSIVE down(id, type, depth) AS ("
        f" SELECT member_id, member_type, 1 FROM {qualified}.group_members"
        f" WHERE {groups}"
        " UNION"
        " SELECT m.member_id, m.member_type, d.depth + 1 FROM down d"
        f" JOIN {qualified}.group_members m ON m.group_id = d.id"
        " WHERE d.type = 'Group' AND d.depth < 32"
        ") SELECT DISTINCT id FROM down WHERE type = 'User'"
    )
