"""`resilient.admin`: a listing cut at the admin's limit says so, and a purge goes past it.

On a MemoryBackend and on a real Redis, with small limits: a listing of exactly `limit` keys is
complete, one more key makes it `truncated`; a purge deletes every record of its state however
many listings that takes, and says when it could not look at them all.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cache_support import run
from redis_fixtures import Backends

import resilient
from resilient.admin import Admin, Listing, Purged, RecordState
from resilient.backends import MemoryBackend
from resilient.exceptions import NotFoundError


def unique(stem: str) -> str:
    """Return a name no other test uses (breakers and functions outlive each test)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Any:
    """A new MemoryBackend, or a RedisBackend of the shared server, emptied."""
    if request.param == "memory":
        return MemoryBackend()
    backends: Backends = request.getfixturevalue("backends")
    return backends(request.getfixturevalue("redis_url"))


def records(backend: Any, name: str, count: int, *, fail: bool = False) -> None:
    """Leave *count* records of the idempotent function *name*: completed, or failed."""

    @resilient.idempotent(key="request_id", name=name, store_errors=True, backend=backend)
    def create(request_id: str) -> str:
        if fail:
            raise ValueError("declined")
        return request_id

    for number in range(count):
        with contextlib.suppress(ValueError):
            create(f"r{number}")


def test_a_listing_of_exactly_limit_keys_is_complete_and_one_more_is_truncated(
    backend: Any,
) -> None:
    """Four records: complete at limit=4; at limit=3, three of them, truncated."""
    name = unique("orders")
    records(backend, name, 4)
    complete = Admin(backend, limit=4).idempotency_records()
    assert (len(complete), complete.truncated) == (4, False)
    cut = Admin(backend, limit=3).idempotency_records()
    assert (len(cut), cut.truncated) == (3, True)
    assert {record.id for record in cut} < {record.id for record in complete}


def test_a_listing_is_still_a_list(backend: Any) -> None:
    """A Listing compares equal to a list of its items, and its repr is a list's."""
    listed = Admin(backend).idempotency_records()
    assert isinstance(listed, list)
    assert listed == []
    assert repr(listed) == "[]"
    assert listed.truncated is False
    cut = Listing([1, 2], truncated=True)
    assert cut == [1, 2]
    assert repr(cut) == "Listing([1, 2], truncated=True)"  # shown in a console, not missed


def test_breakers_and_locks_say_when_their_listing_was_cut(backend: Any) -> None:
    """Three shared breakers and three held locks: truncated at limit=2, complete at 3."""
    names = sorted(unique("upstream") for _ in range(3))
    for name in names:
        with resilient.breaker(name, shared=True, backend=backend):
            pass
    mine = unique("in-process")
    resilient.breaker(mine)  # not shared: this process's, whatever the limit
    guards = [resilient.lock(unique("job"), ttl=30, backend=backend) for _ in range(3)]
    for guard in guards:
        guard.__enter__()
    try:
        cut, complete = Admin(backend, limit=2), Admin(backend, limit=3)
        breakers = cut.breakers()
        assert breakers.truncated
        assert len([info for info in breakers if info.shared]) == 2
        assert mine in [info.name for info in breakers if not info.shared]
        every = complete.breakers()
        assert not every.truncated
        assert [info.name for info in every if info.shared] == names
        locks = cut.locks()
        assert (len(locks), locks.truncated) == (2, True)
        assert not complete.locks().truncated
        assert run(cut.alocks()).truncated
        assert run(cut.abreakers()).truncated
    finally:
        for guard in guards:
            guard.__exit__(None, None, None)


def test_a_purge_goes_past_the_limit_until_every_record_is_deleted(backend: Any) -> None:
    """Seven completed records and limit=2: all seven purged, none left, not truncated."""
    name = unique("orders")
    records(backend, name, 7)
    admin = Admin(backend, limit=2)
    purged = admin.purge_idempotency("completed")
    assert (purged, purged.truncated) == (7, False)
    assert isinstance(purged, int)
    assert Admin(backend).idempotency_records() == []


def test_a_purge_that_cannot_see_past_other_records_says_so(backend: Any) -> None:
    """Only completed records, more than the limit: a purge of failed ones is truncated."""
    records(backend, unique("orders"), 3)

    async def purge() -> Purged:
        return await Admin(backend, limit=2).apurge_idempotency(RecordState.FAILED)

    blind = run(purge())
    assert (blind, blind.truncated) == (0, True)
    seen = Admin(backend, limit=3).purge_idempotency(RecordState.FAILED)
    assert (seen, seen.truncated) == (0, False)
    assert len(Admin(backend).idempotency_records("completed")) == 3


def test_a_purge_by_name_looks_under_that_function_only() -> None:
    """Completed records of one function fill the limit; the failed one of another is purged."""
    backend = MemoryBackend()
    busy, failing = unique("busy"), unique("failing")
    records(backend, busy, 3)
    records(backend, failing, 1, fail=True)
    admin = Admin(backend, limit=2)
    assert admin.idempotency_records("failed").truncated
    purged = admin.purge_idempotency("failed", name=failing)
    assert (purged, purged.truncated) == (1, False)
    assert Admin(backend).idempotency_records("failed") == []


@pytest.mark.parametrize(
    "act", [Admin.breaker, Admin.open_breaker, Admin.reset_breaker], ids=["read", "open", "reset"]
)
def test_an_unknown_breaker_on_memory_says_an_admin_sees_its_own_process(
    act: Callable[[Admin, str], object],
) -> None:
    """On memory, the message points at the process that made the breaker."""
    name = unique("nowhere")
    with pytest.raises(NotFoundError) as caught:
        act(Admin(MemoryBackend(), namespace="shop"), name)
    message = str(caught.value)
    assert message.startswith(f"breaker {name!r} was not made in this process")
    assert "in namespace 'shop'" in message
    assert "a MemoryBackend is in-process" in message


def test_an_unknown_breaker_on_redis_says_where_shared_breakers_are_kept(
    redis_url: str, backends: Backends
) -> None:
    """On Redis, the message names the backend and namespace looked in, not 'this process'."""
    backend = backends(redis_url)
    name = unique("nowhere")
    with pytest.raises(NotFoundError) as caught:
        Admin(backend, namespace="shop").open_breaker(name)
    message = str(caught.value)
    assert message.startswith(f"breaker {name!r} is not kept on {backend!r} in namespace 'shop'")
    assert "where every process keeps its shared=True breakers" in message
    assert "MemoryBackend" not in message
