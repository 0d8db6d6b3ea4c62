"""`resilient.admin`: breakers listed and forced by name, in process and across processes.

The cross-process tests make breakers in other Python processes on a real Redis, and act on
them from this one, which made none of them: what an operator's command line does.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from admin_support import CALLER, SYNC_INTERVAL
from cache_support import PATIENCE, EventLog, run, running
from redis_fixtures import Backends
from redis_infra import RedisClusterProcesses

import resilient
from resilient import BreakerState
from resilient.admin import Admin, BreakerInfo
from resilient.backends import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.events import BreakerClosed, BreakerOpened
from resilient.exceptions import CircuitOpenError, NotFoundError


def unique(stem: str) -> str:
    """Return a breaker name no other test uses (the registry outlives each test)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def fail(breaker: resilient.Breaker, times: int) -> None:
    """Make *times* calls through *breaker* that fail."""
    for _ in range(times):
        with pytest.raises(ConnectionError), breaker:
            raise ConnectionError


# in this process ---------------------------------------------------------------------------


def test_a_breaker_of_this_process_is_listed_with_its_counts() -> None:
    """A breaker that is not shared is listed as this process's, with its window's counts."""
    name = unique("inventory")
    guard = resilient.breaker(name, window=10, minimum_calls=10)
    fail(guard, 3)
    with guard:
        pass
    (info,) = [info for info in Admin().breakers() if info.name == name]
    assert info == BreakerInfo(
        name=name,
        shared=False,
        state=BreakerState.CLOSED,
        calls=4,
        failures=3,
        slow_calls=0,
        failure_rate=0.75,
        slow_call_rate=None,
        consecutive_failures=0,
        rejected=0,
        trips=0,
        until_half_open=None,
    )


def test_forcing_a_breaker_open_by_name_refuses_its_calls_until_it_is_closed() -> None:
    """open_breaker refuses every call at once; close_breaker lets them through again."""
    name = unique("ledger")
    guard = resilient.breaker(name)

    @guard
    def post() -> str:
        return "posted"

    admin = Admin()
    assert admin.open_breaker(name).state is BreakerState.FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        post()
    assert admin.breaker(name).rejected == 1
    assert admin.close_breaker(name).state is BreakerState.CLOSED
    assert post() == "posted"


def test_disable_and_reset_by_name() -> None:
    """A disabled breaker counts nothing; a reset one is closed with its rejections forgotten."""
    name = unique("search")
    guard = resilient.breaker(name, consecutive_failures=2)
    admin = Admin()
    assert admin.disable_breaker(name).state is BreakerState.DISABLED
    fail(guard, 5)
    assert guard.state is BreakerState.DISABLED
    admin.open_breaker(name)
    with pytest.raises(CircuitOpenError), guard:
        pass
    reset = admin.reset_breaker(name)
    assert (reset.state, reset.rejected, reset.calls) == (BreakerState.CLOSED, 0, 0)


def test_an_open_breaker_tells_the_time_until_it_half_opens(clock: Any) -> None:
    """A tripped breaker reads open, with the seconds left of its open time."""
    name = unique("quotes")
    guard = resilient.breaker(name, consecutive_failures=1, open_for=30)
    fail(guard, 1)
    clock.advance(10)
    info = Admin().breaker(name)
    assert (info.state, info.trips, info.until_half_open) == (BreakerState.OPEN, 1, 20.0)
    clock.advance(20)
    assert Admin().breaker(name).state is BreakerState.HALF_OPEN


def test_an_unknown_breaker_is_a_not_found_error_and_makes_none() -> None:
    """Acting on a name no breaker has raises NotFoundError, and no breaker is made."""
    name = unique("nowhere")
    admin = Admin()
    for act in (admin.breaker, admin.open_breaker, admin.close_breaker, admin.reset_breaker):
        with pytest.raises(NotFoundError, match=name) as caught:
            act(name)
        assert (caught.value.kind, caught.value.name) == ("breaker", name)
        assert isinstance(caught.value, LookupError)
    assert name not in [info.name for info in admin.breakers()]


def test_the_async_twins_do_the_same() -> None:
    """abreakers, aopen_breaker, areset_breaker, ... give what the sync methods give."""
    name = unique("mail")
    resilient.breaker(name)
    admin = Admin()

    async def main() -> list[BreakerInfo]:
        return [
            await admin.aopen_breaker(name),
            await admin.abreaker(name),
            await admin.adisable_breaker(name),
            await admin.aclose_breaker(name),
            await admin.areset_breaker(name),
            *[info for info in await admin.abreakers() if info.name == name],
        ]

    states = [info.state for info in run(main())]
    assert states == [
        BreakerState.FORCED_OPEN,
        BreakerState.FORCED_OPEN,
        BreakerState.DISABLED,
        BreakerState.CLOSED,
        BreakerState.CLOSED,
        BreakerState.CLOSED,
    ]


def test_actions_are_reported_as_the_breakers_events(log: EventLog) -> None:
    """Forcing open and closing by name report breaker.opened and breaker.closed, by hand."""
    name = unique("billing")
    resilient.breaker(name)
    Admin().open_breaker(name)
    Admin().close_breaker(name)
    opened, closed = log.of(BreakerOpened), log.of(BreakerClosed)
    assert [(event.policy, event.reason) for event in opened] == [(name, "forced_open")]
    assert [(event.policy, event.reason) for event in closed] == [(name, "closed")]


def test_info_converts_to_json() -> None:
    """to_dict() gives JSON types: the state as its value."""
    name = unique("json")
    resilient.breaker(name)
    info = Admin().open_breaker(name).to_dict()
    assert json.loads(json.dumps(info))["state"] == "forced_open"
    assert info["name"] == name


def test_a_shared_breaker_in_memory_is_acted_on_in_its_stored_state() -> None:
    """shared=True on a MemoryBackend: listed as shared, forced open for the next call at once."""
    backend = MemoryBackend()
    name = unique("shared-memory")
    guard = resilient.breaker(name, shared=True, backend=backend)

    @guard
    def post() -> str:
        return "posted"

    assert post() == "posted"
    admin = Admin(backend)
    assert [info.name for info in admin.breakers() if info.shared] == [name]
    assert admin.open_breaker(name).state is BreakerState.FORCED_OPEN
    with pytest.raises(CircuitOpenError):
        post()
    assert admin.reset_breaker(name).state is BreakerState.CLOSED
    assert post() == "posted"


def test_a_backend_that_cannot_list_is_refused_at_once() -> None:
    """A backend without scan and peek is a TypeError when given, or when first used."""

    class Plain:
        """Has what a shared breaker needs, and nothing to list with."""

        def get_versioned(self, key: str) -> None: ...

    with pytest.raises(TypeError, match="Inspector"):
        Admin(Plain())
    with pytest.raises(ValueError, match="limit"):
        Admin(limit=0)
    with pytest.raises(ValueError, match="namespace"):
        Admin(namespace="no spaces")


# across processes on Redis -----------------------------------------------------------------


def test_another_process_refuses_calls_within_sync_interval_of_an_open(redis_url: str) -> None:
    """Forced open from a process without the breaker: the caller refuses within 0.25 s + slack."""
    name = unique("payments")
    admin = Admin(RedisBackend.from_url(redis_url))
    try:
        with running(CALLER, redis_url, name) as caller:
            assert caller.stdout is not None
            assert caller.stdout.readline().strip() == "ready"
            assert [info.name for info in admin.breakers() if info.shared] == [name]
            opened = admin.open_breaker(name)
            done = time.time()
            assert opened.state is BreakerState.FORCED_OPEN
            refused_at = json.loads(caller.stdout.readline())["refused_at"]
            assert caller.wait(PATIENCE) == 0
        # the documented bound is sync_interval plus a round trip; a loaded machine adds some
        assert refused_at - done < SYNC_INTERVAL + 1.0
    finally:
        admin.backend.close()


def test_stored_breakers_are_read_with_their_rates_and_time_to_half_open(
    redis_url: str, backends: Backends
) -> None:
    """A breaker tripped in one process reads, from another backend object, open with its rates."""
    name = unique("rates")
    guard = resilient.breaker(
        name,
        shared=True,
        backend=backends(redis_url),
        window=4,
        minimum_calls=4,
        failure_rate=0.5,
        open_for=60,
    )
    with guard:
        pass
    with guard:
        pass
    fail(guard, 2)  # 2 of 4: trips, and syncs at once
    admin = Admin(backends(redis_url))
    (info,) = [info for info in admin.breakers() if info.shared]
    assert (info.name, info.shared, info.state, info.trips) == (name, True, BreakerState.OPEN, 1)
    assert (info.calls, info.failures, info.failure_rate) == (4, 2, 0.5)
    assert info.until_half_open is not None
    assert 55 < info.until_half_open <= 60
    closed = admin.close_breaker(name)
    assert (closed.state, closed.calls) == (BreakerState.CLOSED, 0)


def test_namespaces_keep_breakers_apart(redis_url: str, backends: Backends) -> None:
    """An admin of another namespace sees none of them, and finds none by name."""
    name = unique("apart")
    resilient.configure(namespace="orders")
    guard = resilient.breaker(name, shared=True, backend=backends(redis_url))
    with guard:
        pass
    assert [info.name for info in Admin(backends(redis_url)).breakers() if info.shared] == [name]
    elsewhere = Admin(backends(redis_url), namespace="billing")
    assert [info for info in elsewhere.breakers() if info.shared] == []
    with pytest.raises(NotFoundError):
        elsewhere.open_breaker(name)


def test_breakers_on_a_cluster_are_found_on_every_primary(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """Ten shared breakers on a Cluster: every one listed, one forced open by name."""
    backend = RedisBackend.cluster(redis_cluster.startup_nodes)
    names = sorted(unique("cluster") for _ in range(10))
    try:
        for name in names:
            with resilient.breaker(name, shared=True, backend=backend):
                pass
        admin = Admin(backend)

        async def listed() -> list[str]:
            return [info.name for info in await admin.abreakers() if info.shared]

        assert run(listed()) == names
        assert admin.open_breaker(names[3]).state is BreakerState.FORCED_OPEN
        assert resilient.breaker(names[3]).state is BreakerState.FORCED_OPEN
    finally:
        backend.close()
