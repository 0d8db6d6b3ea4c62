"""`lock(..., renew=True)` in one process: one renewer, loss found and told, nothing left over."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
from collections.abc import Iterator

import pytest
from cache_support import PATIENCE, EventLog, eventually, pause, python_processes

import resilient
from resilient import Lease, lock
from resilient.backends import MemoryBackend
from resilient.events import LockLost, LockReleased, LockRenewed
from resilient.exceptions import LockLostError, LockNotAcquiredError
from resilient.testing import FakeClock

_names = itertools.count()
TTL = 0.3  # real seconds: renewals come every 0.1 s


def fresh_name() -> str:
    """Return a lock name no other test uses."""
    return f"renewed-{next(_names)}"


def renewer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "resilient-renewer"]


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    """The backend the locks of a test use (the default one, installed)."""
    memory = MemoryBackend()
    resilient.configure(backend=memory)
    yield memory
    assert eventually(lambda: not renewer_threads())  # every test leaves no renewer behind


def steal(backend: MemoryBackend, lease: Lease) -> None:
    """Make *lease* gone from the backend, as an operator force-releasing it would."""
    guard = lock(lease.name)
    assert backend.unlock(guard._key(), lease.owner)


def test_a_renewed_lease_outlives_its_ttl(backend: MemoryBackend, log: EventLog) -> None:
    """Held for 4 x TTL, the lease stays ours: nobody else gets the lock, no loss on leaving."""
    name = fresh_name()
    with lock(name, ttl=TTL, renew=True) as lease:
        pause(4 * TTL)
        with pytest.raises(LockNotAcquiredError):
            lock(name, timeout=0).__enter__()
        assert not lease.lost
        assert lease.remaining > 0
    renewed = [event for event in log.events if isinstance(event, LockRenewed)]
    assert len(renewed) >= 8  # every TTL / 3
    assert all(event.policy == name for event in renewed)
    assert isinstance(log.events[-1], LockReleased)


def test_without_renewal_the_same_hold_loses_the_lease(backend: MemoryBackend) -> None:
    """The control: the same hold without renew=True runs out and raises on leaving."""
    guard = lock(fresh_name(), ttl=TTL)
    lease = guard.__enter__()
    pause(2 * TTL)
    assert lease.lost
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)


def test_one_thread_renews_every_lease_of_sync_holders(backend: MemoryBackend) -> None:
    """20 threads holding 20 renewed locks are served by one renewer thread, gone after."""
    entered = threading.Barrier(21)
    leave = threading.Event()

    def hold(name: str) -> None:
        with lock(name, ttl=TTL, renew=True) as lease:
            entered.wait()
            leave.wait()
            assert not lease.lost

    holders = [threading.Thread(target=hold, args=(fresh_name(),)) for _ in range(20)]
    for holder in holders:
        holder.start()
    entered.wait()
    pause(2 * TTL)
    assert len(renewer_threads()) == 1
    leave.set()
    for holder in holders:
        holder.join()
    assert eventually(lambda: not renewer_threads())


def test_one_task_per_event_loop_renews_its_leases(backend: MemoryBackend) -> None:
    """20 tasks holding renewed locks are served by one more task, which ends after them."""

    async def hold(name: str, leave: asyncio.Event) -> None:
        async with lock(name, ttl=TTL, renew=True) as lease:
            await leave.wait()
            assert not lease.lost

    async def main() -> None:
        leave = asyncio.Event()
        holders = [asyncio.create_task(hold(fresh_name(), leave)) for _ in range(20)]
        await asyncio.sleep(2 * TTL)
        others = asyncio.all_tasks() - {*holders, asyncio.current_task()}
        assert len(others) == 1  # the loop's renewer
        leave.set()
        await asyncio.gather(*holders)
        await asyncio.sleep(0.05)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())
    assert not renewer_threads()


def test_a_lease_found_gone_is_told_once_and_raises_on_leaving(
    backend: MemoryBackend, log: EventLog
) -> None:
    """Stolen mid-hold: lease.lost turns true within a renewal, on_lost runs, exit raises."""
    told: list[Lease] = []
    guard = lock(fresh_name(), ttl=TTL, renew=True, on_lost=told.append)
    lease = guard.__enter__()
    steal(backend, lease)
    assert eventually(lambda: lease.lost, TTL)
    assert eventually(lambda: told == [lease])  # told by the renewer, just after the flag
    with pytest.raises(LockLostError) as raised:
        guard.__exit__(None, None, None)
    assert raised.value.token == lease.token
    assert [type(event) for event in log.events].count(LockLost) == 1


def test_an_on_lost_that_raises_is_logged_and_the_loss_still_reported(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken callback never stops the renewer: the loss is still told by the exit."""

    def broken(lease: Lease) -> None:
        raise RuntimeError("alerting is down")

    guard = lock(fresh_name(), ttl=TTL, renew=True, on_lost=broken)
    lease = guard.__enter__()
    steal(backend, lease)
    assert eventually(lambda: lease.lost, TTL)
    assert eventually(lambda: "on_lost of lock" in caplog.text)  # logged in the renewer
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)


def test_cancel_on_lost_cancels_the_holding_task_with_lock_lost(backend: MemoryBackend) -> None:
    """An async holder asking for it is cancelled at its await; the block raises LockLostError."""
    name = fresh_name()
    stolen: list[float] = []

    async def work() -> None:
        async with lock(name, ttl=TTL, renew=True, cancel_on_lost=True) as lease:
            steal(backend, lease)
            stolen.append(asyncio.get_running_loop().time())
            await asyncio.sleep(PATIENCE)  # the work, cut short

    async def main() -> float:
        with pytest.raises(LockLostError) as raised:
            await work()
        assert isinstance(raised.value.__cause__, asyncio.CancelledError)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # uncancelled: the caller may go on
        return asyncio.get_running_loop().time() - stolen[0]

    assert asyncio.run(main()) < TTL


def test_a_holder_paused_past_its_term_knows_before_the_renewer_runs(
    clock: FakeClock, backend: MemoryBackend
) -> None:
    """lease.lost is true as soon as its last confirmed term is over, by the lock's clock."""
    guard = lock(fresh_name(), ttl=30, renew=True)
    lease = guard.__enter__()
    assert not lease.lost
    clock.advance(29.9)
    assert not lease.lost
    clock.advance(0.2)  # the process was stopped: no renewal ran
    assert lease.lost
    with pytest.raises(LockLostError):
        lease.check()
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)


def test_a_dropped_lease_is_renewed_no_more(backend: MemoryBackend) -> None:
    """Holders that end without leaving their block leave no renewer; their locks run out."""
    names = [fresh_name() for _ in range(10)]

    def abandon(name: str) -> None:
        lock(name, ttl=TTL, renew=True).__enter__()  # and the thread ends

    for name in names:
        thread = threading.Thread(target=abandon, args=(name,))
        thread.start()
        thread.join()
    gc.collect()
    assert eventually(lambda: not renewer_threads())
    pause(TTL)
    for name in names:
        with lock(name, timeout=0):
            pass


FORK_SCRIPT = """
import json, os, sys, threading
import resilient

def renewers():
    return sum(thread.name == "resilient-renewer" for thread in threading.enumerate())

with resilient.lock("forked", ttl=0.3, renew=True) as lease:
    child = os.fork()
    if child == 0:
        import time
        time.sleep(0.5)
        # the child renews nothing: the lease it inherited is past its term
        os._exit(0 if renewers() == 0 and lease.lost else 1)
    _, status = os.waitpid(child, 0)
    print(json.dumps({"child": os.waitstatus_to_exitcode(status), "parent_lost": lease.lost}))
"""


def test_renewal_does_not_survive_fork_in_the_child() -> None:
    """A child forked while a renewed lease is held has no renewer; its copy of the lease lapses."""
    with python_processes(FORK_SCRIPT, count=1) as results:
        pass
    assert results == [{"child": 0, "parent_lost": False}]


def test_a_released_lease_is_renewed_no_more(backend: MemoryBackend, log: EventLog) -> None:
    """Once the block is left, no renewal event follows and the renewer ends."""
    with lock(fresh_name(), ttl=TTL, renew=True):
        pause(TTL)
    released = len(log.events)
    pause(TTL)
    assert len(log.events) == released
    assert eventually(lambda: not renewer_threads())
