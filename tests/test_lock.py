"""`resilient.lock` in one process (the MemoryBackend): exclusion, fencing, waiting, loss."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cache_support import PATIENCE, EventLog

from resilient import LockPolicy, lock
from resilient.events import LockAcquired, LockContended, LockLost, LockReleased
from resilient.exceptions import LockLostError, LockNotAcquiredError
from resilient.testing import FakeClock

_names = itertools.count()


def fresh_name() -> str:
    """Return a lock name no other test uses."""
    return f"lock-{next(_names)}"


def test_threads_hold_the_lock_one_at_a_time_with_increasing_tokens() -> None:
    """8 threads x 200 acquisitions: never two holders, no lost update, tokens in order."""
    guard = lock(fresh_name(), ttl=30)
    holding = 0
    overlaps = 0
    counter = 0
    tokens: list[int] = []

    def work(_: int) -> None:
        nonlocal holding, overlaps, counter
        for _ in range(200):
            with guard as lease:
                holding += 1
                overlaps += holding > 1
                value = counter
                time.sleep(0)  # noqa: TID251 - give another thread the chance to break in
                counter = value + 1
                tokens.append(lease.token)
                holding -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert (overlaps, counter) == (0, 1600)
    assert tokens == sorted(set(tokens))


def test_tasks_hold_the_lock_one_at_a_time() -> None:
    """100 tasks taking one lock in turn never overlap, and each waiter is woken, not polled."""
    guard = lock(fresh_name(), ttl=30)
    holding = 0
    overlaps = 0

    async def work() -> int:
        nonlocal holding, overlaps
        async with guard as lease:
            holding += 1
            overlaps += holding > 1
            await asyncio.sleep(0.001)
            holding -= 1
            return lease.token

    async def main() -> list[int]:
        return await asyncio.gather(*(work() for _ in range(100)))

    tokens = asyncio.run(main())
    assert overlaps == 0
    assert sorted(tokens) == list(range(min(tokens), min(tokens) + 100))


def test_timeout_zero_tries_once_and_a_timeout_bounds_the_wait() -> None:
    """A held lock refuses at once with timeout=0, and after about `timeout` seconds else."""
    name = fresh_name()
    with lock(name, ttl=30):
        started = time.monotonic()
        with pytest.raises(LockNotAcquiredError, match="not free at once"), lock(name, timeout=0):
            pass
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        with pytest.raises(LockNotAcquiredError) as refused, lock(name, timeout=0.2):
            pass
        assert 0.15 < time.monotonic() - started < 0.2 + PATIENCE
    assert (refused.value.name, refused.value.timeout) == (name, 0.2)


def test_a_waiter_is_woken_when_the_holder_releases() -> None:
    """A thread waiting for a held lock gets it as soon as the holder lets go."""
    name = fresh_name()
    released = threading.Event()

    def hold() -> None:
        with lock(name, ttl=30):
            time.sleep(0.2)  # noqa: TID251 - the holder's work
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.05)  # noqa: TID251 - let it take the lock
    with lock(name, ttl=30, timeout=PATIENCE):
        assert released.wait(0.5)
    holder.join()


def test_a_lease_that_ran_out_raises_lock_lost_on_leaving(clock: FakeClock, log: EventLog) -> None:
    """A holder whose ttl passed learns it when leaving the block, and the next holder is in."""
    name = fresh_name()
    leases = []

    def overstay() -> None:
        with lock(name, ttl=5) as lease:
            leases.append(lease)
            clock.advance(6)
            with lock(name, ttl=5, timeout=0) as other:  # the lock is free for someone else
                leases.append(other)

    with pytest.raises(LockLostError) as lost:
        overstay()
    lease, other = leases
    assert other.token > lease.token
    assert lease.lost
    assert (lost.value.name, lost.value.token) == (name, lease.token)
    assert [type(e) for e in log.events] == [
        LockAcquired,
        LockAcquired,
        LockReleased,
        LockLost,
    ]


def test_a_lost_lease_notes_itself_on_an_exception_already_raised(clock: FakeClock) -> None:
    """An exception leaving the block stays the one raised, with a note that the lease was lost."""

    def fail_late() -> None:
        with lock(fresh_name(), ttl=1):
            clock.advance(2)
            raise KeyError("work failed")

    with pytest.raises(KeyError) as raised:
        fail_late()
    assert "was lost while held" in raised.value.__notes__[0]


def test_contention_is_reported_once_per_acquisition(log: EventLog) -> None:
    """A caller that finds the lock held reports lock.contended once, then lock.acquired."""
    name = fresh_name()
    guard = lock(name, ttl=30, timeout=PATIENCE)

    def hold() -> None:
        with guard:
            time.sleep(0.1)  # noqa: TID251 - the holder's work

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.03)  # noqa: TID251 - let it take the lock
    with guard:
        pass
    holder.join()
    kinds = [type(e) for e in log.events]
    assert kinds.count(LockContended) == 1
    assert kinds.count(LockAcquired) == 2


def test_as_a_decorator_every_call_runs_under_the_lock() -> None:
    """A decorated sync or async function runs each call holding the lock."""
    guard = lock(fresh_name(), ttl=30, timeout=0)

    @guard
    def inside() -> str:
        with pytest.raises(LockNotAcquiredError), guard:
            pass
        return "ran"

    @guard
    async def ainside() -> str:
        with pytest.raises(LockNotAcquiredError):
            async with guard:
                pass
        return "ran"

    assert inside() == "ran"
    assert asyncio.run(ainside()) == "ran"


def test_a_cancelled_waiter_leaves_nothing_held() -> None:
    """Cancelling a task that waits for the lock leaves the lock to the others."""
    name = fresh_name()

    async def main() -> bool:
        async with lock(name, ttl=30):
            waiter = asyncio.create_task(lock(name, ttl=30).__aenter__())
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with lock(name, ttl=30, timeout=0):
            return True

    assert asyncio.run(main())


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: lock(""), TypeError, "takes a name first"),
        (lambda: lock("x", ttl=0), ValueError, "ttl=0 must be more than zero"),
        (lambda: lock("x", timeout=-1), ValueError, "negative"),
        (lambda: lock("x", renewal=True), TypeError, "unknown keyword 'renewal'"),  # type: ignore[call-arg]
        (lambda: lock("x", renew=1), TypeError, "'renew' must be <class 'bool'>"),  # type: ignore[arg-type]
        (lambda: lock("x", on_lost=print), TypeError, "pass renew=True too"),
        (lambda: lock("x", renew=True, on_lost=3), TypeError, "'on_lost' must be callable"),  # type: ignore[arg-type]
        (lambda: lock("x", backend=object()), TypeError, "lacks lock, unlock"),
        (lambda: lock("x", 5), TypeError, "takes a LockPolicy or keyword arguments"),  # type: ignore[arg-type]
    ],
)
def test_bad_settings_fail_at_once(make: object, error: type[Exception], message: str) -> None:
    """Nonsense settings raise when the lock is made, saying what is wrong."""
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_a_policy_can_be_given_and_evolved() -> None:
    """lock(name, policy, **options) evolves the policy with the keywords."""
    assert lock("evolved", LockPolicy(ttl=5), timeout=1).policy == LockPolicy(ttl=5, timeout=1)
