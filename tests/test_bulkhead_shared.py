"""@bulkhead(shared=True): slots held as leases on a backend, here a MemoryBackend.

The backend is the in-process one, so these tests prove the shared procedure (leases, renewal,
waiting on the backend, failure policy) with real threads and event loops; the bound across
real processes on Redis is proven in tests/integration/test_bulkhead_redis.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, eventually, pause, run, together

import resilient
from resilient import BulkheadPolicy, bulkhead
from resilient.backends.memory import MemoryBackend
from resilient.events import BackendFailed, BulkheadAdmitted, BulkheadRejected, LockLost
from resilient.exceptions import BackendUnavailableError, BulkheadFullError

KEY = "resilient:bulkhead:{shared}"  # where a bulkhead named "shared" keeps its slots


class Gauge:
    """Counts the calls running now, from any thread, and remembers the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


class Broken(MemoryBackend):
    """A backend whose slot primitives fail, as an unreachable server's would."""

    def __init__(self, *, failing: tuple[str, ...]) -> None:
        super().__init__(name="broken")
        self.failing = failing

    def _fail(self, name: str) -> None:
        if name in self.failing:
            raise ConnectionError(f"{name}: the server is unreachable")

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        self._fail("acquire_slot")
        return super().acquire_slot(key, owner, limit, ttl)

    def release_slot(self, key: str, owner: str) -> bool:
        self._fail("release_slot")
        return super().release_slot(key, owner)


class Recording(MemoryBackend):
    """A MemoryBackend that tells who holds a slot of KEY, and how many wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self.owners: list[str] = []  # of every slot it gave, in order
        self.holders: set[str] = set()
        self.waiting = 0  # threads in wait_slot now
        self._lock = threading.Lock()

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        admitted = super().acquire_slot(key, owner, limit, ttl)
        if admitted:
            self.owners.append(owner)
            self.holders.add(owner)
        return admitted

    def release_slot(self, key: str, owner: str) -> bool:
        self.holders.discard(owner)
        return super().release_slot(key, owner)

    def wait_slot(self, key: str, limit: int, timeout: float) -> None:
        with self._lock:
            self.waiting += 1
        try:
            super().wait_slot(key, limit, timeout)
        finally:
            with self._lock:
                self.waiting -= 1


@pytest.fixture
def backend() -> Recording:
    """A (recording) MemoryBackend of the test's own."""
    return Recording()


@pytest.fixture
def log() -> Any:
    """An EventLog installed as the only observer for the test."""
    events = EventLog()
    resilient.configure(observers=[events])
    yield events
    resilient.reset_defaults()


def holding(function: Any) -> tuple[threading.Thread, threading.Event]:
    """Start *function(release)* in a thread; return it and the event that lets it finish."""
    release = threading.Event()
    thread = threading.Thread(target=function, args=(release,))
    thread.start()
    return thread, release


# the bound ---------------------------------------------------------------------------------------


def test_threads_and_tasks_never_exceed_the_shared_bound(backend: Recording) -> None:
    """Sixty threads and sixty tasks on two functions sharing a name run at most four at once."""
    gauge = Gauge()
    options: dict[str, Any] = {"max_concurrent": 4, "max_waiting": 100, "name": "shared"}

    @bulkhead(shared=True, backend=backend, **options)
    def work() -> int:
        gauge.enter()
        pause(0.002)
        gauge.leave()
        return 1

    @bulkhead(shared=True, backend=backend, **options)
    async def awork() -> int:
        gauge.enter()
        await asyncio.sleep(0.002)
        gauge.leave()
        return 1

    async def tasks() -> list[int]:
        return await asyncio.gather(*(awork() for _ in range(60)))

    loop = threading.Thread(target=lambda: results.extend(run(tasks())))
    results: list[Any] = []
    loop.start()
    results.extend(together(60, work))
    loop.join(PATIENCE * 4)
    assert results == [1] * 120
    assert gauge.peak == 4
    assert backend.acquire_slot(KEY, "anyone", 1, 1.0)  # every slot was given back


def test_the_slots_live_at_the_bulkheads_key_on_the_backend(backend: Recording) -> None:
    """A running call holds a slot under `{namespace}:bulkhead:{name}`; it is free after."""

    @bulkhead(max_concurrent=1, shared=True, backend=backend, name="shared")
    def hold(release: threading.Event) -> None:
        release.wait(PATIENCE)

    holder, release = holding(hold)
    try:
        assert eventually(lambda: len(backend.holders) == 1)
        assert not backend.acquire_slot(KEY, "intruder", 1, 1.0)
    finally:
        release.set()
        holder.join(PATIENCE)
    assert backend.acquire_slot(KEY, "intruder", 1, 1.0)


# waiting -----------------------------------------------------------------------------------------


def test_max_waiting_counts_this_processs_waiters(backend: Recording, log: EventLog) -> None:
    """One slot held, one call waiting: the next is refused at once; the waiter then runs."""

    @bulkhead(max_concurrent=1, max_waiting=1, shared=True, backend=backend, name="shared")
    def hold(release: threading.Event) -> str:
        release.wait(PATIENCE)
        return "ran"

    holder, release = holding(hold)
    assert eventually(lambda: len(backend.holders) == 1)
    waiter = threading.Thread(target=hold, args=(release,))
    waiter.start()
    try:
        assert eventually(lambda: backend.waiting == 1)
        with pytest.raises(BulkheadFullError) as refused:
            hold(release)
        assert refused.value.waited == 0.0
    finally:
        release.set()
        holder.join(PATIENCE)
        waiter.join(PATIENCE)
    [admitted] = log.of(BulkheadAdmitted)
    assert admitted.waited > 0
    assert [event.waited for event in log.of(BulkheadRejected)] == [0.0]


def test_a_waiter_is_woken_by_a_release_not_a_poll(backend: Recording) -> None:
    """A waiter runs right after the holder returns: not when the holder's lease would end."""
    ran: list[float] = []

    @bulkhead(
        max_concurrent=1, max_waiting=5, shared=True, backend=backend, lease_ttl=60, name="shared"
    )
    def hold(release: threading.Event) -> None:
        release.wait(PATIENCE)
        ran.append(time.monotonic())

    holder, release = holding(hold)
    waiter = threading.Thread(target=hold, args=(release,))
    try:
        assert eventually(lambda: len(backend.holders) == 1)
        waiter.start()
        assert eventually(lambda: backend.waiting == 1)
    finally:
        released = time.monotonic()
        release.set()
        holder.join(PATIENCE)
        waiter.join(PATIENCE)
    assert len(ran) == 2
    assert ran[1] - released < 1.0


def test_a_dead_holders_slot_frees_after_its_lease(backend: Recording) -> None:
    """A slot taken and never renewed nor given back (its process died) admits a waiter once
    its lease runs out, and not before."""
    assert backend.acquire_slot(KEY, "dead process", 1, 0.3)
    started = time.monotonic()

    @bulkhead(
        max_concurrent=1,
        max_waiting=1,
        timeout=PATIENCE,
        shared=True,
        backend=backend,
        name="shared",
    )
    def work() -> float:
        return time.monotonic() - started

    waited = work()
    assert 0.25 <= waited < 0.3 + 1.0


def test_a_waiter_gives_up_after_its_timeout_and_its_deadline(backend: Recording) -> None:
    """A slot held on: a waiter is refused after its timeout, or the caller's deadline."""
    assert backend.acquire_slot(KEY, "holder", 1, 30.0)

    @bulkhead(
        max_concurrent=1, max_waiting=1, timeout=0.2, shared=True, backend=backend, name="shared"
    )
    def work() -> str:
        return "ran"

    with pytest.raises(BulkheadFullError) as refused:
        work()
    assert 0.15 <= refused.value.waited < 0.2 + 1.0
    with resilient.deadline(0.05), pytest.raises(BulkheadFullError) as cut:
        work()
    assert cut.value.waited < 0.2
    assert backend.waiting == 0


# leases ------------------------------------------------------------------------------------------


def test_a_long_call_keeps_its_slot_past_its_lease_ttl(backend: Recording) -> None:
    """Renewed every third of lease_ttl, a call running four lease_ttls never loses its slot."""

    @bulkhead(max_concurrent=1, shared=True, backend=backend, lease_ttl=0.15, name="shared")
    def hold(release: threading.Event) -> None:
        release.wait(PATIENCE)

    holder, release = holding(hold)
    try:
        assert eventually(lambda: len(backend.holders) == 1)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            assert not backend.acquire_slot(KEY, "probe", 1, 1.0)
            pause(0.02)
    finally:
        release.set()
        holder.join(PATIENCE)
    assert backend.acquire_slot(KEY, "probe", 1, 1.0)


def test_a_slot_found_gone_on_release_is_reported_lost(log: EventLog) -> None:
    """A call whose slot was taken from it (its lease ran out) returns, and says it was lost."""
    backend = Recording()

    @bulkhead(max_concurrent=1, shared=True, backend=backend, lease_ttl=30, name="shared")
    def work() -> str:
        # what a lease running out looks like from here: the slot is no longer this call's
        assert backend.release_slot(KEY, backend.owners[-1])
        return "ran"

    assert work() == "ran"
    [lost] = log.of(LockLost)
    assert lost.policy == "shared"


# failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_unreachable_backend_fails_closed(is_async: bool, log: EventLog) -> None:
    """No slot can be asked for: BackendUnavailableError, and the function never runs."""
    broken = Broken(failing=("acquire_slot", "release_slot"))
    ran: list[int] = []

    @bulkhead(shared=True, backend=broken, name="shared")
    def work() -> None:
        ran.append(1)

    @bulkhead(shared=True, backend=broken, name="shared")
    async def awork() -> None:
        ran.append(1)

    with pytest.raises(BackendUnavailableError) as error:
        run(awork()) if is_async else work()
    assert (error.value.backend, error.value.operation) == ("broken", "acquire_slot")
    assert "did not run" in str(error.value)
    assert ran == []


def test_a_failed_release_keeps_the_calls_outcome(log: EventLog) -> None:
    """The slot cannot be given back: the value is returned, and the failure reported."""
    broken = Broken(failing=("release_slot",))

    @bulkhead(shared=True, backend=broken, name="shared")
    def work() -> str:
        return "ran"

    assert work() == "ran"
    [failed] = log.of(BackendFailed)
    assert (failed.operation, failed.policy) == ("release_slot", "shared")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_exception_or_cancellation_gives_the_slot_back(
    is_async: bool, backend: Recording
) -> None:
    """A call that raises, or a task cancelled while it runs, frees its slot at once."""

    @bulkhead(max_concurrent=1, shared=True, backend=backend, name="shared")
    def fail() -> None:
        raise ValueError("no")

    @bulkhead(max_concurrent=1, shared=True, backend=backend, name="shared")
    async def forever() -> None:
        await asyncio.Event().wait()

    async def cancelled() -> None:
        task = asyncio.create_task(forever())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not backend.acquire_slot(KEY, "probe", 1, 1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    if is_async:
        run(cancelled())
    else:
        with pytest.raises(ValueError, match="no"):
            fail()
    assert backend.acquire_slot(KEY, "probe", 1, 1.0)


# settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"backend": MemoryBackend()}, ValueError, "add shared=True"),
        ({"shared": True, "backend": object()}, TypeError, "lacks acquire_slot"),
        ({"shared": "yes"}, TypeError, "shared"),
        ({"shared": True, "lease_ttl": 0}, ValueError, "lease_ttl"),
        ({"shared": True, "lease_ttl": "30s"}, TypeError, "lease_ttl"),
    ],
)
def test_bad_shared_settings_fail_at_decoration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Shared settings that cannot work raise when the decorator is built."""
    with pytest.raises(error, match=message):
        bulkhead(**options)


def test_the_configured_backend_is_the_default(backend: Recording) -> None:
    """shared=True without backend= keeps the slots on the configured backend."""
    policy = BulkheadPolicy(max_concurrent=1, shared=True, name="shared")
    assert policy.lease_ttl == 30.0
    resilient.configure(backend=backend)
    try:

        @bulkhead(policy)
        def peek() -> bool:
            return backend.acquire_slot(KEY, "probe", 1, 1.0)

        assert peek() is False  # the call itself holds the one slot
    finally:
        resilient.reset_defaults()
