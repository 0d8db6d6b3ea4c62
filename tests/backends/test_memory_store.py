"""The memory backend's stores: bounded in values and in the indexes that name them."""

from __future__ import annotations

from resilient.backends.memory import LruStore


def test_per_call_tags_leave_no_index_behind_once_their_values_are_gone() -> None:
    """A tag per call ("user:{id}") keeps no index per user ever seen: memory stays bounded."""
    store = LruStore(maxsize=100)
    for user in range(10_000):
        store.put(user, "profile", ttl=60, indexes=[f"user:{user}", "users"], token=None, now=0.0)
    assert len(store.data) == 100
    assert len(store._indexes) <= 4 * 100 + 1
    assert store.purge([f"user:{9_999}"], now=1.0) == 1
    assert store.purge(["users"], now=1.0) == 99


def test_expired_values_leave_their_indexes_when_many_come_and_go() -> None:
    """Indexes of values that expired are pruned as new ones arrive, even without evictions."""
    store = LruStore(maxsize=1_000)
    for user in range(20_000):
        now = float(user)
        store.put(user, "x", ttl=0.5, indexes=[f"user:{user}"], token=None, now=now)
    assert len(store._indexes) <= 4 * 1_000 + 1


def test_locks_on_many_names_keep_nothing_once_released() -> None:
    """A lock per call ("order:{id}", a shared flight per key) keeps no state per name ever used.

    Fencing tokens still go up for each name: one counter serves every lock of the store.
    """
    store = LruStore(maxsize=100)
    tokens: list[int] = []
    for order in range(10_000):
        locked = store.lock(f"order:{order % 50}", "owner", ttl=30, now=0.0)
        assert locked.token is not None
        tokens.append(locked.token)
        assert store.unlock(f"order:{order % 50}", "owner", now=0.0)
    assert store._claims == {}
    assert tokens == sorted(set(tokens))
