"""How a process's connections are split into the shared pool and the tenant shards."""

from __future__ import annotations

import pytest

from service.pools import MIN_SHARDED, SHARD_SIZE, Layout


@pytest.mark.parametrize(
    ("max_size", "shared", "shards", "capacity"),
    [
        (1, 1, (), 1),
        (2, 2, (), 1),
        (3, 3, (), 2),
        (4, 1, (3,), 3),
        (8, 2, (6,), 6),
        (20, 2, (5, 5, 4, 4), 18),
        (50, 2, (4,) * 12, 48),
    ],
)
def test_layouts_of_common_pool_sizes(
    max_size: int, shared: int, shards: tuple[int, ...], capacity: int
) -> None:
    layout = Layout.of(max_size)
    assert (layout.shared, layout.shards, layout.capacity) == (shared, shards, capacity)


@pytest.mark.parametrize("max_size", range(1, 201))
def test_every_connection_is_in_exactly_one_pool(max_size: int) -> None:
    layout = Layout.of(max_size)
    assert layout.shared + sum(layout.shards) == max_size
    # SCIM requests never take every connection: the shared pool keeps one at least.
    assert layout.capacity < max_size or max_size == 1
    if max_size >= MIN_SHARDED:
        assert all(SHARD_SIZE - 1 <= size < 2 * SHARD_SIZE for size in layout.shards)
