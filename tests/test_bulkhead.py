"""@bulkhead: a bound on concurrent calls, for threads and tasks of any loop, with a FIFO queue."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, pause, run, together

import resilient
from resilient import BulkheadPolicy, bulkhead
from resilient.events import BulkheadAdmitted, BulkheadRejected
from resilient.exceptions import BulkheadFullError


class Gauge:
    """Counts the calls running now, from any thread, and remembers the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


async def settle(turns: int = 20) -> None:
    """Let every other task of this loop run until it blocks."""
    for _ in range(turns):
        await asyncio.sleep(0)


# the bound ---------------------------------------------------------------------------------------


def test_threads_never_exceed_the_bound() -> None:
    """A hundred threads calling at once never run more than max_concurrent calls together."""
    gauge = Gauge()

    @bulkhead(max_concurrent=4, max_waiting=100)
    def work(n: int) -> int:
        gauge.enter()
        pause(0.005)
        gauge.leave()
        return n

    results = together(100, lambda: work(1))
    assert results == [1] * 100
    assert gauge.peak == 4
    assert gauge.calls == 100


def test_tasks_never_exceed_the_bound() -> None:
    """A thousand tasks of one loop never run more than max_concurrent calls together."""
    gauge = Gauge()

    @bulkhead(max_concurrent=4, max_waiting=1_000)
    async def work(n: int) -> int:
        gauge.enter()
        await asyncio.sleep(0.001)
        gauge.leave()
        return n

    async def main() -> list[int]:
        return await asyncio.gather(*(work(n) for n in range(1_000)))

    assert run(main()) == list(range(1_000))
    assert gauge.peak == 4
    assert gauge.calls == 1_000


def test_threads_and_loops_share_one_bound() -> None:
    """Two loops full of tasks, and threads with loops of their own, share one bound."""
    gauge = Gauge()

    @bulkhead(max_concurrent=4, max_waiting=1_000)
    async def work() -> None:
        gauge.enter()
        await asyncio.sleep(0.002)
        gauge.leave()

    async def many() -> None:
        await asyncio.gather(*(work() for _ in range(100)))

    arrivals = itertools.count()

    def caller() -> None:
        run(many() if next(arrivals) < 2 else work())

    results = together(22, caller)
    assert results == [None] * 22
    assert gauge.peak == 4


def test_sync_and_async_loops_share_the_bound_of_a_method() -> None:
    """Threads calling a method, and two loops calling it through worker threads, stay bounded."""
    gauge = Gauge()

    class Service:
        @bulkhead(max_concurrent=3, max_waiting=1_000)
        def fetch(self) -> None:
            gauge.enter()
            pause(0.002)
            gauge.leave()

    async def from_tasks(service: Service) -> None:
        await asyncio.gather(*(asyncio.to_thread(service.fetch) for _ in range(20)))

    arrivals = itertools.count()

    def caller() -> None:
        service = Service()
        if next(arrivals) < 2:
            run(from_tasks(service))
        else:
            service.fetch()

    results = together(30, caller)
    assert results == [None] * 30
    assert gauge.peak == 3


# the queue ---------------------------------------------------------------------------------------


def test_a_call_beyond_the_queue_is_refused_at_once() -> None:
    """With every slot and queue place taken, one more call raises at once and runs nothing."""
    started: list[str] = []

    @bulkhead(max_concurrent=1, max_waiting=2, name="reports")
    async def report(who: str, release: asyncio.Event) -> str:
        started.append(who)
        await release.wait()
        return who

    async def main() -> None:
        release = asyncio.Event()
        running = [asyncio.create_task(report(who, release)) for who in "abc"]
        await settle()
        with pytest.raises(BulkheadFullError) as refused:
            await report("d", release)
        assert started == ["a"]
        assert (refused.value.name, refused.value.max_concurrent) == ("reports", 1)
        assert refused.value.waited == 0.0
        release.set()
        assert await asyncio.gather(*running) == ["a", "b", "c"]

    run(main())
    assert started == ["a", "b", "c"]


def test_no_queue_by_default() -> None:
    """With the default max_waiting=0, a call finding every slot taken is refused at once."""
    inside = threading.Event()
    release = threading.Event()

    @bulkhead(max_concurrent=1)
    def hold() -> None:
        inside.set()
        release.wait(PATIENCE)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(PATIENCE)
        with pytest.raises(BulkheadFullError, match="no place to wait"):
            hold()
    finally:
        release.set()
        holder.join(PATIENCE)
    hold()


def test_waiters_are_admitted_first_come_first_served() -> None:
    """Waiting calls get the slot in the order they arrived."""
    order: list[int] = []

    @bulkhead(max_concurrent=1, max_waiting=50)
    async def step(n: int) -> None:
        order.append(n)
        await asyncio.sleep(0)

    async def main() -> None:
        tasks = []
        for n in range(50):
            tasks.append(asyncio.create_task(step(n)))
            await asyncio.sleep(0)  # each one arrives, and queues, before the next
        await asyncio.gather(*tasks)

    run(main())
    assert order == list(range(50))


# running out of time -----------------------------------------------------------------------------


def test_a_waiter_gives_up_after_its_timeout() -> None:
    """A call that waits for timeout seconds without a slot raises, saying how long it waited."""
    inside = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    @bulkhead(max_concurrent=1, max_waiting=1, timeout=timedelta(milliseconds=100))
    def hold(who: str) -> None:
        ran.append(who)
        inside.set()
        release.wait(PATIENCE)

    holder = threading.Thread(target=hold, args=("holder",))
    holder.start()
    try:
        assert inside.wait(PATIENCE)
        with pytest.raises(BulkheadFullError, match="within") as refused:
            hold("waiter")
    finally:
        release.set()
        holder.join(PATIENCE)
    assert 0.09 <= refused.value.waited < 1.0
    assert ran == ["holder"]
    hold("after")  # the waiter left the queue: the next call is admitted
    assert ran == ["holder", "after"]


def test_the_callers_deadline_bounds_the_wait() -> None:
    """Inside resilient.deadline(0.1) a waiter without a timeout gives up at the deadline."""

    @bulkhead(max_concurrent=1, max_waiting=1)
    async def hold(release: asyncio.Event) -> None:
        await release.wait()

    async def main() -> float:
        release = asyncio.Event()
        holder = asyncio.create_task(hold(release))
        await settle()
        try:
            with resilient.deadline(0.1), pytest.raises(BulkheadFullError) as refused:
                await hold(release)
        finally:
            release.set()
            await holder
        return refused.value.waited

    assert 0.09 <= run(main()) < 1.0


def test_a_deadline_already_past_refuses_at_once() -> None:
    """A call whose deadline has passed does not queue: it is refused without waiting."""

    @bulkhead(max_concurrent=1, max_waiting=1)
    async def hold(release: asyncio.Event) -> None:
        await release.wait()

    async def main() -> None:
        release = asyncio.Event()
        holder = asyncio.create_task(hold(release))
        await settle()
        with resilient.deadline(0.01):
            await asyncio.sleep(0.02)
            with pytest.raises(BulkheadFullError) as refused:
                await hold(release)
        release.set()
        await holder
        assert refused.value.waited == 0.0

    run(main())


# cancellation and failures -----------------------------------------------------------------------


def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    """A waiting task cancelled leaves the queue; afterwards the full bound is available again."""
    gauge = Gauge()
    log = EventLog()
    resilient.configure(observers=[log])

    @bulkhead(max_concurrent=2, max_waiting=5)
    async def work(release: asyncio.Event) -> None:
        gauge.enter()
        await release.wait()
        gauge.leave()

    async def main() -> None:
        release = asyncio.Event()
        holders = [asyncio.create_task(work(release)) for _ in range(2)]
        waiter = asyncio.create_task(work(release))
        await settle()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await asyncio.gather(*holders)
        assert gauge.calls == 2
        again = asyncio.Event()
        both = [asyncio.create_task(work(again)) for _ in range(2)]
        await settle()
        assert gauge.running == 2  # both admitted at once: no slot leaked
        again.set()
        await asyncio.gather(*both)

    run(main())
    assert log.of(BulkheadAdmitted) == []


def test_a_waiter_cancelled_after_being_handed_the_slot_passes_it_on() -> None:
    """A waiter cancelled just as the slot reaches it hands the slot to the next waiter."""
    ran: list[str] = []

    @bulkhead(max_concurrent=1, max_waiting=5)
    async def work(who: str, release: asyncio.Event) -> None:
        ran.append(who)
        await release.wait()

    async def main() -> None:
        release = asyncio.Event()
        holder = asyncio.create_task(work("holder", release))
        await settle()
        handed = asyncio.create_task(work("handed", release))
        await settle()
        last = asyncio.create_task(work("last", release))
        await settle()
        # the holder's release hands the slot to "handed"; cancel it before it runs
        holder.add_done_callback(lambda _: handed.cancel())
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await handed
        await asyncio.wait_for(last, PATIENCE)
        await asyncio.wait_for(work("fresh", release), PATIENCE)

    run(main())
    assert ran == ["holder", "last", "fresh"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_exception_releases_the_slot(is_async: bool) -> None:
    """A call that raises gives its slot back: the next call is admitted, not refused."""
    calls: list[int] = []

    @bulkhead(max_concurrent=1)
    def broken() -> None:
        calls.append(1)
        raise ValueError("boom")

    @bulkhead(max_concurrent=1)
    async def abroken() -> None:
        calls.append(1)
        raise ValueError("boom")

    def call() -> None:
        if is_async:
            run(abroken())
        else:
            broken()

    for _ in range(3):
        with pytest.raises(ValueError, match="boom"):
            call()
    assert len(calls) == 3


def test_a_cancelled_running_call_releases_its_slot() -> None:
    """A running task cancelled gives its slot back."""

    @bulkhead(max_concurrent=1)
    async def work(slow: bool) -> str:
        if slow:
            await asyncio.sleep(PATIENCE)
        return "done"

    async def main() -> str:
        task = asyncio.create_task(work(slow=True))
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await work(slow=False)

    assert run(main()) == "done"


# events ------------------------------------------------------------------------------------------


def test_waits_and_refusals_are_reported(log: EventLog) -> None:
    """A call that waited reports bulkhead.admitted; a refused one bulkhead.rejected."""

    @bulkhead(max_concurrent=1, max_waiting=1, name="pdf")
    async def render(release: asyncio.Event) -> None:
        await release.wait()

    async def main() -> None:
        release = asyncio.Event()
        first = asyncio.create_task(render(release))
        await settle()
        second = asyncio.create_task(render(release))
        await settle()
        with pytest.raises(BulkheadFullError):
            await render(release)
        release.set()
        await asyncio.gather(first, second)

    run(main())
    [rejected] = log.of(BulkheadRejected)
    assert (rejected.policy, rejected.waited) == ("pdf", 0.0)
    assert rejected.attributes() == {"policy": "pdf"}
    [waited] = log.of(BulkheadAdmitted)
    assert waited.policy == "pdf"
    assert waited.waited >= 0.0


def test_a_call_finding_a_free_slot_reports_nothing(log: EventLog) -> None:
    """Admission without waiting is silent."""

    @bulkhead(max_concurrent=2)
    def quick() -> int:
        return 1

    assert quick() == 1
    assert log.events == []


# decoration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_concurrent": 0}, ValueError, "max_concurrent=0 is too small"),
        ({"max_concurrent": "4"}, TypeError, "max_concurrent='4' is not a whole number"),
        ({"max_concurrent": True}, TypeError, "is not a whole number"),
        ({"max_concurrent": 2.5}, TypeError, "is not a whole number"),
        ({"max_waiting": -1}, ValueError, "give zero or more"),
        ({"max_waiting": 1, "timeout": 0}, ValueError, "more than zero seconds"),
        ({"max_waiting": 1, "timeout": "1s"}, TypeError, "is not a duration"),
        ({"timeout": 1.0}, ValueError, "max_waiting=0 lets no call wait"),
        ({"name": 3}, TypeError, "name"),
        ({"max_concurent": 3}, TypeError, "unknown keyword 'max_concurent'"),
    ],
)
def test_bad_settings_fail_at_decoration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Settings that cannot work raise when the decorator is built, saying what is wrong."""
    with pytest.raises(error, match=message):
        bulkhead(**options)


def test_a_policy_is_taken_and_its_fields_overridden() -> None:
    """bulkhead(policy, ...) uses the policy, with the keywords replacing its fields."""
    policy = BulkheadPolicy(max_concurrent=2, max_waiting=3, timeout=timedelta(seconds=2))
    assert policy.timeout == 2.0
    assert BulkheadPolicy().max_concurrent == 10
    assert BulkheadPolicy().max_waiting == 0

    inside = threading.Event()

    @bulkhead(policy, max_concurrent=1, name="shared-policy")
    def hold(release: threading.Event) -> None:
        inside.set()
        release.wait(PATIENCE)

    release = threading.Event()
    holder = threading.Thread(target=hold, args=(release,))
    holder.start()
    assert inside.wait(PATIENCE)
    try:
        with resilient.deadline(0.05), pytest.raises(BulkheadFullError) as refused:
            hold(release)
    finally:
        release.set()
        holder.join(PATIENCE)
    assert (refused.value.name, refused.value.max_concurrent) == ("shared-policy", 1)
    with pytest.raises(TypeError, match="takes a BulkheadPolicy"):
        bulkhead(3)  # type: ignore[arg-type]  # misuse on purpose


def test_generator_functions_are_refused() -> None:
    """A generator function cannot be bounded by its calls, and is refused when decorated."""

    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError):
        bulkhead()(numbers)


def test_methods_and_async_methods_share_the_bound_across_instances() -> None:
    """A decorated method keeps its binding; every instance shares the function's bulkhead."""

    class Client:
        def __init__(self, base: str) -> None:
            self.base = base

        @bulkhead(max_concurrent=1)
        def get(self, path: str) -> str:
            return self.base + path

        @bulkhead(max_concurrent=1)
        async def aget(self, path: str, release: asyncio.Event) -> str:
            await release.wait()
            return self.base + path

    assert Client("a").get("/x") == "a/x"

    async def main() -> None:
        release = asyncio.Event()
        first = asyncio.create_task(Client("a").aget("/1", release))
        await settle()
        with pytest.raises(BulkheadFullError):
            await Client("b").aget("/2", release)
        release.set()
        assert await first == "a/1"
        assert await Client("b").aget("/3", release) == "b/3"

    run(main())
