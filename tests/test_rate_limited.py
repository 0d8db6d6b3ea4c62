"""@rate_limited and RateLimiter blocks in one process: GCRA on the MemoryBackend."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, run, together

import resilient
from resilient import RateLimitPolicy, rate_limited, retry
from resilient.events import BackendFailed, RateLimitAllowed, RateLimitRejected
from resilient.exceptions import BackendUnavailableError, RateLimitedError
from resilient.testing import FakeClock


def admitted(call: Any, times: int) -> int:
    """Call *call* *times* times; return how many calls the limit let through."""
    count = 0
    for _ in range(times):
        try:
            call()
        except RateLimitedError:
            continue
        count += 1
    return count


# the limit ---------------------------------------------------------------------------------------


def test_a_quiet_limit_admits_its_burst_then_refuses_with_the_time_to_wait(
    fake_clock: FakeClock,
) -> None:
    """rate=10 a second admits 10 at once; the 11th is told a token comes in 0.1 s."""

    @rate_limited(rate=10, per=1.0)
    def ping() -> str:
        return "pong"

    assert [ping() for _ in range(10)] == ["pong"] * 10
    with pytest.raises(RateLimitedError) as refused:
        ping()
    assert refused.value.retry_after == pytest.approx(0.1)
    assert refused.value.name.endswith("ping")
    fake_clock.advance(0.1)
    assert ping() == "pong"
    assert admitted(ping, 5) == 0


def test_the_steady_rate_is_one_call_per_interval(fake_clock: FakeClock) -> None:
    """With burst=1 calls 0.1 s apart all go; one squeezed in between is refused."""

    @rate_limited(rate=10, burst=1)
    def ping() -> str:
        return "pong"

    for _ in range(20):
        assert ping() == "pong"
        fake_clock.advance(0.05)
        assert admitted(ping, 1) == 0
        fake_clock.advance(0.05)


def test_a_long_quiet_spell_refills_the_burst_and_no_more(fake_clock: FakeClock) -> None:
    """An hour of quiet gives back the burst of 3, not 3 an interval for an hour."""

    @rate_limited(rate=1, per=10.0, burst=3)
    def ping() -> None:
        return None

    assert admitted(ping, 5) == 3
    fake_clock.advance(3600)
    assert admitted(ping, 5) == 3


def test_the_limit_is_exact_under_sixteen_threads(fake_clock: FakeClock) -> None:
    """16 threads calling 50 times each at one instant get exactly the burst, then the refill."""
    limit = rate_limited(rate=100, per=1.0)
    ran = 0
    lock = threading.Lock()

    @limit
    def work() -> None:
        nonlocal ran
        with lock:
            ran += 1

    counts = together(16, lambda: admitted(work, 50))
    assert sum(counts) == 100
    assert ran == 100
    fake_clock.advance(0.25)
    counts = together(16, lambda: admitted(work, 50))
    assert sum(counts) == 25


def test_sixteen_threads_on_the_real_clock_never_pass_the_rate() -> None:
    """Hammered by 16 threads for 0.6 s, a 200/s limit admits 1 + 200 per second, at most."""
    calls: list[float] = []

    @rate_limited(rate=200, burst=1)
    def work() -> None:
        calls.append(time.monotonic())

    stop = time.monotonic() + 0.6

    def hammer() -> None:
        while time.monotonic() < stop:
            with contextlib.suppress(RateLimitedError):
                work()

    together(16, hammer)
    span = calls[-1] - calls[0]
    assert len(calls) <= 1 + 200 * span + 1  # the last one may land on the boundary
    assert len(calls) >= 0.8 * 200 * span  # tokens were taken as they came


def test_a_key_gives_each_caller_a_limit_of_its_own(fake_clock: FakeClock) -> None:
    """key='{user}' splits the limit: one user spending theirs leaves the other's whole."""

    @rate_limited(rate=2, per=60.0, key="{user}")
    def fetch(user: str, page: int = 0) -> str:
        return f"{user}:{page}"

    assert admitted(lambda: fetch("alice", 1), 5) == 2
    assert admitted(lambda: fetch("bob"), 5) == 2
    assert admitted(lambda: fetch(user="alice", page=2), 1) == 0


def test_a_method_is_limited_per_key_across_instances(fake_clock: FakeClock) -> None:
    """On a method the key leaves self out: instances share each user's limit."""

    class Client:
        @rate_limited(rate=1, per=60.0, key="{user}")
        def get(self, user: str) -> str:
            return user

    assert Client().get("alice") == "alice"
    with pytest.raises(RateLimitedError):
        Client().get("alice")
    assert Client().get("bob") == "bob"


def test_functions_sharing_a_name_share_the_limit(fake_clock: FakeClock) -> None:
    """Two functions decorated by limits named alike draw from one bucket."""
    partner = rate_limited(rate=3, per=60.0, name="partner-api")

    @partner
    def read() -> str:
        return "read"

    @partner
    def write() -> str:
        return "write"

    assert admitted(read, 2) == 2
    assert admitted(write, 5) == 1
    assert admitted(read, 1) == 0


def test_functions_without_a_name_have_limits_of_their_own(fake_clock: FakeClock) -> None:
    """One unnamed limiter decorating two functions gives each its own bucket."""
    limit = rate_limited(rate=1, per=60.0)

    @limit
    def first() -> None:
        return None

    @limit
    def second() -> None:
        return None

    assert admitted(first, 3) == 1
    assert admitted(second, 3) == 1


def test_an_async_function_is_limited_the_same(fake_clock: FakeClock) -> None:
    """Async functions share the decision: the burst, then RateLimitedError."""

    @rate_limited(rate=5, per=1.0)
    async def ping() -> str:
        await asyncio.sleep(0)
        return "pong"

    async def main() -> int:
        count = 0
        for _ in range(8):
            try:
                await ping()
            except RateLimitedError:
                continue
            count += 1
        return count

    assert run(main()) == 5


def test_a_refused_call_does_not_run() -> None:
    """The function is never entered by a call the limit refuses."""
    entered = 0

    @rate_limited(rate=1, per=60.0)
    def work() -> None:
        nonlocal entered
        entered += 1

    assert admitted(work, 10) == 1
    assert entered == 1


# waiting -----------------------------------------------------------------------------------------


def test_waiting_calls_go_one_interval_apart() -> None:
    """wait=True spaces calls out instead of refusing them: 6 calls of a 50/s limit take 0.1 s."""
    started: list[float] = []

    @rate_limited(rate=50, burst=1, wait=True)
    def work() -> None:
        started.append(time.monotonic())

    for _ in range(6):
        work()
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert min(gaps) >= 0.019
    assert started[-1] - started[0] < 0.1 + PATIENCE / 10


def test_waiting_tasks_queue_in_arrival_order() -> None:
    """Ten tasks waiting on a 100/s limit run 10 ms apart, in the order they asked."""
    order: list[int] = []

    @rate_limited(rate=100, burst=1, wait=True)
    async def work(n: int) -> None:
        order.append(n)

    async def main() -> float:
        start = time.monotonic()
        await asyncio.gather(*(work(n) for n in range(10)))
        return time.monotonic() - start

    elapsed = run(main())
    assert order == list(range(10))
    assert 0.085 <= elapsed < 0.09 + PATIENCE / 10


def test_a_wait_longer_than_max_wait_is_refused_at_once() -> None:
    """A call whose token would come after max_wait raises at once, without waiting."""

    @rate_limited(rate=1, per=10.0, wait=True, max_wait=1.0)
    def work() -> str:
        return "done"

    assert work() == "done"
    start = time.monotonic()
    with pytest.raises(RateLimitedError) as refused:
        work()
    assert time.monotonic() - start < 0.05
    assert refused.value.retry_after == pytest.approx(10.0, abs=0.1)


def test_a_wait_never_runs_past_the_deadline() -> None:
    """Inside deadline(0.3) a waiting call that would wait 1 s is refused at once."""

    @rate_limited(rate=1, per=1.0, burst=1, wait=True)
    def work() -> str:
        return "done"

    assert work() == "done"
    start = time.monotonic()
    with resilient.deadline(0.3), pytest.raises(RateLimitedError):
        work()
    assert time.monotonic() - start < 0.05


def test_waiting_threads_under_a_deadline_all_finish_before_it() -> None:
    """20 threads wait for a 20/s limit inside deadline(0.3): those served run before it."""
    finished: list[float] = []

    @rate_limited(rate=20, burst=1, wait=True)
    def work() -> None:
        finished.append(time.monotonic())

    def one() -> float:
        with resilient.deadline(0.3) as limit:
            with contextlib.suppress(RateLimitedError):
                work()
            return limit.at or 0.0

    deadlines = together(20, one)
    assert finished
    assert max(finished) <= max(deadlines) + 0.01
    assert 6 <= len(finished) <= 8  # the first at once, then one every 50 ms within 0.3 s


def test_a_waiting_task_cancelled_leaves_the_others_their_turns() -> None:
    """A task cancelled while it waits for its token does not hold up the tasks behind it."""

    @rate_limited(rate=20, burst=1, wait=True)
    async def work(n: int) -> int:
        return n

    async def main() -> list[int]:
        assert await work(0) == 0
        doomed = asyncio.ensure_future(work(1))
        later = asyncio.ensure_future(work(2))
        await asyncio.sleep(0.01)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return [await later]

    start = time.monotonic()
    assert run(main()) == [2]
    assert time.monotonic() - start < 0.1 + PATIENCE / 10


def test_retry_waits_for_the_token_a_refusal_names(fake_clock: FakeClock) -> None:
    """@retry around @rate_limited honours retry_after: it sleeps exactly until the token."""

    @retry(on=RateLimitedError, attempts=3)
    @rate_limited(rate=1, per=5.0)
    def work() -> str:
        return "done"

    before = fake_clock.monotonic()
    assert work() == "done"
    assert work() == "done"
    assert fake_clock.monotonic() - before == pytest.approx(5.0)


# blocks ------------------------------------------------------------------------------------------


def test_a_named_limit_guards_a_with_block(fake_clock: FakeClock) -> None:
    """`with limit:` takes a token on entry, and raises before the block when none is free."""
    limit = rate_limited(rate=2, per=60.0, name="exports")
    ran = []
    for n in range(3):
        try:
            with limit:
                ran.append(n)
        except RateLimitedError:
            pass
    assert ran == [0, 1]


def test_async_with_and_acquire_by_key(fake_clock: FakeClock) -> None:
    """`async with` takes from the limit's one bucket; aacquire(key) from a key's own."""
    limit = rate_limited(rate=1, per=60.0, name="uploads")

    async def main() -> list[str]:
        got = []
        async with limit:
            got.append("block")
        await limit.aacquire("tenant-1")
        got.append("tenant-1")
        await limit.aacquire(("tenant", 2))
        got.append("tenant-2")
        with pytest.raises(RateLimitedError):
            await limit.aacquire("tenant-1")
        with pytest.raises(RateLimitedError):
            async with limit:
                got.append("never")
        return got

    assert run(main()) == ["block", "tenant-1", "tenant-2"]
    limit.acquire("tenant-3")
    with pytest.raises(RateLimitedError):
        limit.acquire("tenant-3")


def test_a_block_needs_a_named_limit() -> None:
    """An unnamed limit has nowhere to keep a block's tokens: a TypeError says to name it."""
    limit = rate_limited(rate=1)
    with pytest.raises(TypeError, match="name="), limit:
        pass
    with pytest.raises(TypeError, match="name="):
        limit.acquire("user")


# events ------------------------------------------------------------------------------------------


def test_allowed_and_rejected_calls_are_reported_with_bounded_fields(
    fake_clock: FakeClock,
) -> None:
    """Each decision is an event naming the limit and the seconds, never the key or arguments."""
    log = EventLog()
    resilient.configure(observers=[log])

    @rate_limited(rate=1, per=2.0, key="{user}", name="partner")
    def fetch(user: str) -> str:
        return user

    fetch("alice")
    with pytest.raises(RateLimitedError):
        fetch("alice")
    allowed, rejected = log.events
    assert isinstance(allowed, RateLimitAllowed)
    assert (allowed.policy, allowed.waited) == ("partner", 0.0)
    assert isinstance(rejected, RateLimitRejected)
    assert (rejected.policy, rejected.retry_after) == ("partner", pytest.approx(2.0))
    assert "alice" not in repr(log.events)


def test_a_call_that_waited_reports_how_long() -> None:
    """A call admitted after waiting for its token reports the wait."""
    log = EventLog()
    resilient.configure(observers=[log])

    @rate_limited(rate=50, burst=1, wait=True, name="spaced")
    def work() -> None:
        return None

    work()
    work()
    waits = [event.waited for event in log.events if isinstance(event, RateLimitAllowed)]
    assert waits[0] == 0.0
    assert 0.01 < waits[1] <= 0.02


# when the backend fails --------------------------------------------------------------------------


class Unreachable(resilient.backends.MemoryBackend):
    """A backend whose rate-limit decisions all fail, as a Redis out of reach does."""

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Any:
        raise ConnectionError("no route to host")

    async def athrottle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Any:
        raise ConnectionError("no route to host")


def test_a_failing_backend_lets_calls_go_and_says_so() -> None:
    """By default (fail_open) a call runs when the backend cannot decide; an event reports it."""
    log = EventLog()
    resilient.configure(observers=[log])

    @rate_limited(rate=1, per=60.0, backend=Unreachable(), name="open")
    def work() -> str:
        return "ran"

    @rate_limited(rate=1, per=60.0, backend=Unreachable(), name="open")
    async def awork() -> str:
        return "ran"

    assert [work(), work(), run(awork())] == ["ran"] * 3
    failures = [event for event in log.events if isinstance(event, BackendFailed)]
    assert [event.operation for event in failures] == ["throttle"] * 3
    assert failures[0].error_type == "ConnectionError"


def test_fail_closed_raises_backend_unavailable_and_runs_nothing() -> None:
    """With fail_open=False a call the backend cannot decide raises, without running."""
    ran = []

    @rate_limited(rate=1, backend=Unreachable(), fail_open=False)
    def work() -> None:
        ran.append(1)

    with pytest.raises(BackendUnavailableError) as failed:
        work()
    assert failed.value.operation == "throttle"
    assert isinstance(failed.value.__cause__, ConnectionError)
    assert ran == []


# bad settings, refused when the decorator is made ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"rate": 0}, ValueError, "rate=0 must be more than zero"),
        ({"rate": -5}, ValueError, "rate=-5"),
        ({"rate": "100/s"}, TypeError, "rate='100/s' is not a number"),
        ({"rate": float("nan")}, ValueError, "finite"),
        ({"rate": 10, "per": 0}, ValueError, "per=0"),
        ({"rate": 10, "burst": 0}, ValueError, "burst=0 is too small"),
        ({"rate": 10, "burst": 2.5}, TypeError, "burst=2.5 is not a whole number"),
        ({"rate": 10, "burst": True}, TypeError, "burst=True"),
        ({"rate": 10, "max_wait": 1.0}, ValueError, "add wait=True"),
        ({"rate": 10, "wait": True, "max_wait": 0}, ValueError, "max_wait=0"),
        ({"rate": 10, "wait": "yes"}, TypeError, "wait"),
        ({"rate": 10, "key": 42}, TypeError, "key=42"),
        ({"rate": 10, "backend": object()}, TypeError, "lacks throttle"),
        ({"rate": 10, "rates": 5}, TypeError, "unknown keyword 'rates'"),
    ],
)
def test_bad_settings_are_refused_when_the_decorator_is_made(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        rate_limited(**options)


def test_a_key_template_naming_no_parameter_is_refused_when_decorating() -> None:
    limit = rate_limited(rate=10, key="{account}")
    with pytest.raises(ValueError, match="account"):

        @limit
        def fetch(user: str) -> str:
            return user


def test_a_policy_object_configures_the_decorator(fake_clock: FakeClock) -> None:
    """A RateLimitPolicy made once configures many limits; keywords override its fields."""
    policy = RateLimitPolicy(rate=4, per=1.0)
    assert (policy.interval, policy.capacity) == (0.25, 4)
    assert RateLimitPolicy(rate=0.5).capacity == 1

    @rate_limited(policy, burst=1)
    def work() -> None:
        return None

    assert admitted(work, 3) == 1
    assert "rate=4" in repr(rate_limited(policy, name="p"))
