"""@cached on the memory backend: options, hits, expiry, eviction, what is stored, events."""

from __future__ import annotations

import asyncio
import inspect
import linecache
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from cache_support import PATIENCE, run

import resilient
from resilient import (
    CachePolicy,
    CacheStatus,
    cache_status,
    cached,
    retry,
    wait,
)
from resilient._config import DEFAULTS
from resilient.backends import MemoryBackend
from resilient.events import CacheHit, CacheMissed
from resilient.testing import FakeClock, capture_events

T = TypeVar("T")


def in_fresh_thread(function: Callable[[], T]) -> T:
    """Call *function* in a new thread (so in a fresh context) and return its result."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(function()))
    thread.start()
    thread.join(PATIENCE)
    assert results, "the thread did not finish"
    return results[0]


# --- decoration --------------------------------------------------------------------------------


def test_ttl_is_required() -> None:
    """cached() without ttl= is a TypeError that shows how to write one."""
    with pytest.raises(TypeError, match=r"needs ttl=.*e\.g\. ttl=300"):
        cached()


def test_options_are_validated_before_any_function_is_decorated() -> None:
    """Nonsense options fail when cached(...) is called, not at the first call."""
    with pytest.raises(ValueError, match="ttl="):
        cached(ttl=-1)
    with pytest.raises(ValueError, match="maxsize"):
        cached(ttl=1, maxsize=0)
    with pytest.raises(TypeError, match="tags="):
        cached(ttl=1, tags="users")  # type: ignore[arg-type]  # wrong on purpose


def test_backend_must_be_a_backend() -> None:
    """backend= something without the backend methods is refused at decoration."""
    with pytest.raises(TypeError, match=r"backend=.* is not a backend"):
        cached(ttl=1, backend=object())  # type: ignore[arg-type]  # wrong on purpose


def test_name_must_fit_in_storage_keys() -> None:
    """A cache name with spaces or other characters keys cannot carry is a ValueError."""
    with pytest.raises(ValueError, match="letters, digits"):
        cached(ttl=1, name="user profiles!")


def test_a_policy_object_with_keyword_overrides(clock: FakeClock) -> None:
    """cached(policy, **options) applies the policy with the given fields replaced."""
    runs: list[int] = []

    @cached(CachePolicy(ttl=60, maxsize=100), maxsize=1)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    assert [square(2), square(3), square(2)] == [4, 9, 4]
    assert runs == [2, 3, 2]  # maxsize=1: 3 evicted 2


def test_decorating_runs_nothing() -> None:
    """Applying @cached neither calls the function nor stores anything: the first call misses."""
    runs: list[int] = []

    @cached(ttl=60)
    def f() -> int:
        runs.append(1)
        return 1

    assert runs == []
    assert f() == 1
    assert cache_status() is CacheStatus.MISS


def test_signatures_and_metadata_are_preserved() -> None:
    """A cached function keeps its signature, name, docstring, and sync or async nature."""

    def plain(user_id: int, *, lang: str = "en") -> str:
        """Say hello."""
        return f"{user_id}:{lang}"

    async def coroutine(user_id: int) -> int:
        return user_id

    class Service:
        def method(self, item: str) -> str:
            return item

    decorated = cached(ttl=60)(plain)
    assert inspect.signature(decorated) == inspect.signature(plain)
    assert decorated.__name__ == "plain"
    assert decorated.__doc__ == "Say hello."
    assert decorated.__wrapped__ is plain  # type: ignore[attr-defined]  # wrapt provides it
    assert not inspect.iscoroutinefunction(decorated)
    decorated_async = cached(ttl=60)(coroutine)
    assert inspect.iscoroutinefunction(decorated_async)
    assert inspect.signature(decorated_async) == inspect.signature(coroutine)
    method = cached(ttl=60)(Service.method)
    assert inspect.signature(method) == inspect.signature(Service.method)


# --- hits and misses ---------------------------------------------------------------------------


def test_sync_function_runs_once_per_arguments(clock: FakeClock) -> None:
    """A second call with the same arguments is answered from the cache."""
    runs: list[int] = []

    @cached(ttl=60)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    assert square(3) == 9
    assert cache_status() is CacheStatus.MISS
    assert square(3) == 9
    assert cache_status() is CacheStatus.HIT
    assert square(4) == 16
    assert cache_status() is CacheStatus.MISS
    assert runs == [3, 4]


def test_async_function_runs_once_per_arguments(clock: FakeClock) -> None:
    """An async cached function awaits the function only on a miss."""
    runs: list[int] = []

    @cached(ttl=60)
    async def square(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(0)
        return x * x

    async def main() -> list[tuple[int, CacheStatus | None]]:
        return [(await square(x), cache_status()) for x in (3, 3, 4, 3)]

    assert run(main()) == [
        (9, CacheStatus.MISS),
        (9, CacheStatus.HIT),
        (16, CacheStatus.MISS),
        (9, CacheStatus.HIT),
    ]
    assert runs == [3, 4]


def test_a_miss_runs_with_the_callers_own_instance(clock: FakeClock) -> None:
    """A method's miss runs on the instance it was called on; a hit serves the shared value."""

    class Greeter:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(ttl=60)
        def greet(self, other: str) -> str:
            return f"{self.name} greets {other}"

        @cached(ttl=60)
        async def agreet(self, other: str) -> str:
            return f"{self.name} greets {other}"

    assert Greeter("ann").greet("bob") == "ann greets bob"
    assert Greeter("cy").greet("bob") == "ann greets bob"
    assert Greeter("cy").greet("dee") == "cy greets dee"
    assert run(Greeter("eve").agreet("bob")) == "eve greets bob"
    assert run(Greeter("fay").agreet("bob")) == "eve greets bob"


def test_a_hit_returns_the_very_object_stored(clock: FakeClock) -> None:
    """The memory backend stores values as they are: a hit returns the same object."""

    @cached(ttl=60)
    def load() -> list[int]:
        return [1, 2]

    assert load() is load()


def test_unhashable_arguments_are_cached_by_value(clock: FakeClock) -> None:
    """Lists and dicts as arguments work: equal ones hit the same entry."""
    runs: list[object] = []

    @cached(ttl=60)
    def total(numbers: list[int], weights: dict[str, int]) -> int:
        runs.append(numbers)
        return sum(numbers) * weights["w"]

    assert total([1, 2], {"w": 2}) == 6
    assert total([1, 2], {"w": 2}) == 6
    assert cache_status() is CacheStatus.HIT
    assert total([2, 1], {"w": 2}) == 6
    assert runs == [[1, 2], [2, 1]]


def test_functions_do_not_share_entries(clock: FakeClock) -> None:
    """Two cached functions called with the same arguments keep separate values."""

    @cached(ttl=60)
    def double(x: int) -> int:
        return 2 * x

    @cached(ttl=60)
    def triple(x: int) -> int:
        return 3 * x

    assert (double(5), triple(5), double(5), triple(5)) == (10, 15, 10, 15)


# --- ttl ---------------------------------------------------------------------------------------


def test_value_expires_after_ttl(clock: FakeClock) -> None:
    """A value is served until ttl seconds after it was stored, then computed again."""
    runs: list[float] = []

    @cached(ttl=10)
    def now() -> float:
        runs.append(clock.monotonic())
        return clock.monotonic()

    assert now() == 0.0
    clock.advance(9.999)
    assert now() == 0.0
    assert cache_status() is CacheStatus.HIT
    clock.advance(0.001)
    assert now() == 10.0
    assert cache_status() is CacheStatus.MISS
    assert runs == [0.0, 10.0]


def test_async_value_expires_after_ttl(clock: FakeClock) -> None:
    """Async functions expire their values on the configured clock too."""

    @cached(ttl=timedelta(minutes=1))
    async def now() -> float:
        return clock.monotonic()

    async def main() -> list[float]:
        first = await now()
        clock.advance(59)
        second = await now()
        clock.advance(1)
        return [first, second, await now()]

    assert run(main()) == [0.0, 0.0, 60.0]


def test_a_clock_configured_after_decoration_drives_expiry() -> None:
    """The clock is read at call time, so configure(clock=) affects decorated functions."""
    runs: list[int] = []

    @cached(ttl=5)
    def f() -> int:
        runs.append(1)
        return len(runs)

    late = FakeClock(monotonic=1000.0)
    resilient.configure(clock=late)
    assert f() == 1
    late.advance(4)
    assert f() == 1
    late.advance(1)
    assert f() == 2


def test_settings_changed_between_hits_take_effect_at_the_next_call(clock: FakeClock) -> None:
    """A hit keeps no stale view of configure(): a new backend, clock or observer counts at once."""
    runs: list[int] = []

    @cached(ttl=5)
    def f() -> int:
        runs.append(1)
        return len(runs)

    assert [f(), f()] == [1, 1]
    resilient.configure(backend=MemoryBackend())
    assert [f(), f()] == [2, 2]
    with capture_events() as events:
        assert f() == 2
    assert [type(event) for event in events] == [CacheHit]
    later = FakeClock(monotonic=clock.monotonic() + 10)
    resilient.configure(clock=later)
    assert f() == 3


def test_a_configuration_while_a_hit_snapshot_is_taken_discards_the_snapshot(
    clock: FakeClock,
) -> None:
    """configure() landing between a miss's check and its snapshot leaves no stale hit path.

    The interleaving of two threads is forced in one: a trace function runs configure() at the
    very line where the snapshot of the defaults is stored.
    """
    first, second = MemoryBackend(), MemoryBackend()
    resilient.configure(backend=first)

    @cached(ttl=60)
    def double(x: int) -> int:
        return 2 * x

    fired: list[int] = []

    def at_snapshot(frame: Any, event: str, arg: object) -> Any:
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if event == "line" and not fired and "self.fast = (" in line:
            fired.append(frame.f_lineno)
            resilient.configure(backend=second)
        return at_snapshot

    def tracer(frame: Any, event: str, arg: object) -> Any:
        return at_snapshot if frame.f_code.co_name == "_keep_fast" else None

    sys.settrace(tracer)
    try:
        assert double(1) == 2  # a miss on first, whose snapshot is being taken
    finally:
        sys.settrace(None)
    assert fired, "the snapshot line was not reached"
    assert double(1) == 2
    assert cache_status() is CacheStatus.MISS  # from second: first's region was not kept


def test_namespaces_keep_entries_apart(clock: FakeClock) -> None:
    """Values stored under one namespace are not served under another on the same backend."""

    @cached(ttl=60)
    def app() -> str:
        return DEFAULTS.namespace

    resilient.configure(namespace="orders")
    assert app() == "orders"
    resilient.configure(namespace="billing")
    assert app() == "billing"
    assert cache_status() is CacheStatus.MISS
    resilient.configure(namespace="orders")
    assert app() == "orders"
    assert cache_status() is CacheStatus.HIT


# --- maxsize -----------------------------------------------------------------------------------


def test_least_recently_used_value_is_evicted(clock: FakeClock) -> None:
    """Past maxsize, the value used longest ago goes first; a hit counts as a use."""
    runs: list[str] = []

    @cached(ttl=60, maxsize=2)
    def f(name: str) -> str:
        runs.append(name)
        return name.upper()

    f("a")
    f("b")
    f("a")  # a is now the most recently used
    f("c")  # evicts b
    assert runs == ["a", "b", "c"]
    f("a")
    f("c")
    assert runs == ["a", "b", "c"]
    f("b")  # evicts a
    assert runs == ["a", "b", "c", "b"]
    f("a")
    assert runs == ["a", "b", "c", "b", "a"]


def test_each_function_has_its_own_maxsize(clock: FakeClock) -> None:
    """One function filling its entries does not evict another function's values."""
    runs: list[str] = []

    @cached(ttl=60, maxsize=1)
    def small(x: int) -> int:
        runs.append(f"small{x}")
        return x

    @cached(ttl=60, maxsize=10)
    def large(x: int) -> int:
        runs.append(f"large{x}")
        return x

    large(1)
    for x in range(5):
        small(x)
    large(1)
    assert runs.count("large1") == 1


# --- what is stored ----------------------------------------------------------------------------


def test_none_is_cached_by_default(clock: FakeClock) -> None:
    """A None result is a value like any other and is served from the cache."""
    runs: list[int] = []

    @cached(ttl=60)
    def find(x: int) -> None:
        runs.append(x)

    assert find(1) is None
    assert find(1) is None
    assert cache_status() is CacheStatus.HIT
    assert runs == [1]


def test_cache_none_false_runs_again_after_none(clock: FakeClock) -> None:
    """With cache_none=False a None result is returned but not stored."""
    results: list[int | None] = [None, None, 3]
    runs: list[int] = []

    @cached(ttl=60, cache_none=False)
    def find() -> int | None:
        runs.append(1)
        return results.pop(0)

    assert [find(), find(), find(), find()] == [None, None, 3, 3]
    assert len(runs) == 3


def test_condition_decides_what_is_stored(clock: FakeClock) -> None:
    """Only results the condition accepts are stored; the others are returned and forgotten."""
    results = [{"status": "pending"}, {"status": "done"}]
    runs: list[int] = []

    @cached(ttl=60, condition=lambda result: result["status"] == "done")
    def job() -> dict[str, str]:
        runs.append(1)
        return results[min(len(runs), 2) - 1]

    assert job() == {"status": "pending"}
    assert job() == {"status": "done"}
    assert job() == {"status": "done"}
    assert len(runs) == 2


def test_condition_applies_to_async_results(clock: FakeClock) -> None:
    """An async function's awaited result, not its coroutine, is given to the condition."""
    runs: list[int] = []

    @cached(ttl=60, condition=lambda result: result > 1)
    async def count() -> int:
        runs.append(1)
        return len(runs)

    async def main() -> list[int]:
        return [await count(), await count(), await count()]

    assert run(main()) == [1, 2, 2]


# --- exceptions --------------------------------------------------------------------------------


def test_exceptions_are_never_cached(clock: FakeClock) -> None:
    """A call that raises stores nothing: the next call runs the function again."""
    outcomes: list[Exception | str] = [ValueError("first"), "second"]
    runs: list[int] = []

    @cached(ttl=60)
    def load() -> str:
        runs.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(ValueError, match="first"):
        load()
    assert load() == "second"
    assert load() == "second"
    assert len(runs) == 2


def test_async_exceptions_are_never_cached(clock: FakeClock) -> None:
    """An async call that raises stores nothing, and the error is the function's own."""
    error = LookupError("missing")
    runs: list[int] = []

    @cached(ttl=60)
    async def load() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise error
        return "found"

    async def main() -> str:
        with pytest.raises(LookupError) as raised:
            await load()
        assert raised.value is error
        return await load()

    assert run(main()) == "found"
    assert len(runs) == 2


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2), asyncio.CancelledError()])
def test_base_exceptions_pass_through_and_are_not_cached(
    clock: FakeClock, error: BaseException
) -> None:
    """KeyboardInterrupt, SystemExit and cancellation propagate unchanged; nothing is stored."""
    runs: list[int] = []

    @cached(ttl=60)
    def load() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise error
        return "ok"

    with pytest.raises(type(error)):
        load()
    assert load() == "ok"
    assert len(runs) == 2


# --- cache_status ------------------------------------------------------------------------------


def test_cache_status_is_none_before_any_cached_call() -> None:
    """In a context where no cached function ran, cache_status() is None."""
    assert in_fresh_thread(cache_status) is None


def test_cache_status_is_per_asyncio_task(clock: FakeClock) -> None:
    """Each task reads its own latest status, even after another task's call set another."""
    missed = asyncio.Event()

    @cached(ttl=60)
    async def load(x: int) -> int:
        return x

    async def hitting() -> CacheStatus | None:
        await load(1)
        await missed.wait()  # the other task's miss happens in between
        return cache_status()

    async def missing() -> CacheStatus | None:
        await load(2)
        missed.set()
        return cache_status()

    async def main() -> tuple[CacheStatus | None, ...]:
        await load(1)
        await load(1)
        statuses = await asyncio.gather(hitting(), missing())
        return (*statuses, cache_status())

    assert run(main()) == (CacheStatus.HIT, CacheStatus.MISS, CacheStatus.HIT)


def test_cache_status_is_per_thread(clock: FakeClock) -> None:
    """Each thread reads its own latest status, even after another thread's call set another."""
    missed = threading.Event()

    @cached(ttl=60)
    def load(x: int) -> int:
        return x

    load(1)
    load(1)
    statuses: dict[str, CacheStatus | None] = {}

    def hitting() -> None:
        load(1)
        assert missed.wait(PATIENCE)  # the other thread's miss happens in between
        statuses["hit"] = cache_status()

    def missing() -> None:
        load(2)
        missed.set()
        statuses["miss"] = cache_status()

    threads = [threading.Thread(target=hitting), threading.Thread(target=missing)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert statuses == {"hit": CacheStatus.HIT, "miss": CacheStatus.MISS}
    assert cache_status() is CacheStatus.HIT  # this thread's own last call


# --- events ------------------------------------------------------------------------------------


def test_miss_and_hit_events(clock: FakeClock) -> None:
    """A miss reports CacheMissed with how long the value took; a hit reports CacheHit."""

    @cached(ttl=60, name="profile")
    def profile(user_id: int) -> str:
        clock.advance(2.5)  # the function takes 2.5 s
        return "p"

    with capture_events() as events:
        profile(1)
        clock.advance(1)
        profile(1)
    assert events == [
        CacheMissed(policy="profile", time=2.5, elapsed=2.5),
        CacheHit(policy="profile", time=3.5),
    ]


def test_events_name_the_function_by_default(clock: FakeClock) -> None:
    """Without name=, events carry the function's module and qualified name."""

    @cached(ttl=60)
    def lookup() -> int:
        return 1

    with capture_events() as events:
        lookup()
    assert [event.policy for event in events] == [
        f"{__name__}.test_events_name_the_function_by_default.<locals>.lookup"
    ]


def test_async_events_match_sync_events(clock: FakeClock) -> None:
    """An async function reports the same events as a sync one for the same calls."""

    @cached(ttl=60, name="same")
    def sync_f() -> int:
        clock.advance(1)
        return 1

    @cached(ttl=60, name="same", backend=MemoryBackend())  # not sync_f's entries
    async def async_f() -> int:
        clock.advance(1)
        return 1

    async def calls() -> None:
        await async_f()
        await async_f()

    with capture_events() as sync_events:
        sync_f()
        sync_f()
    with capture_events() as async_events:
        run(calls())
    assert [type(event) for event in sync_events] == [CacheMissed, CacheHit]
    assert [(type(e), e.policy, e.fields().get("elapsed")) for e in sync_events] == [
        (type(e), e.policy, e.fields().get("elapsed")) for e in async_events
    ]


# --- stacked with @retry -----------------------------------------------------------------------


def test_retry_outside_cached_retries_misses_and_caches_the_success(clock: FakeClock) -> None:
    """@retry @cached: failed attempts store nothing, the success is stored, hits skip both."""
    outcomes: list[Exception | str] = [ConnectionError(), ConnectionError(), "rates"]
    runs: list[int] = []

    @retry(on=ConnectionError, attempts=3, wait=wait.none())
    @cached(ttl=60)
    def rates(currency: str) -> str:
        runs.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert rates("EUR") == "rates"
    assert rates("EUR") == "rates"
    assert cache_status() is CacheStatus.HIT
    assert len(runs) == 3
    rates.invalidate("EUR")  # type: ignore[attr-defined]  # retry's typing hides it
    outcomes.append("fresh")
    assert rates("EUR") == "fresh"


def test_cached_outside_retry_stores_the_retried_result(clock: FakeClock) -> None:
    """@cached @retry: one miss runs the retrying call; its final result is stored."""
    outcomes: list[Exception | str] = [ConnectionError(), "rates"]
    runs: list[int] = []

    @cached(ttl=60)
    @retry(on=ConnectionError, attempts=3, wait=wait.none())
    def rates(currency: str) -> str:
        runs.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert rates("EUR") == "rates"
    assert cache_status() is CacheStatus.MISS
    assert rates(currency="EUR") == "rates"
    assert cache_status() is CacheStatus.HIT
    assert len(runs) == 2
    rates.invalidate("EUR")
    outcomes.append("fresh")
    assert rates("EUR") == "fresh"


def test_exhausted_retries_are_not_cached_in_either_order(clock: FakeClock) -> None:
    """When every attempt fails the error propagates and the next call tries again."""
    runs: list[str] = []

    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    @cached(ttl=60)
    def outer() -> str:
        runs.append("outer")
        raise ConnectionError

    @cached(ttl=60)
    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    def inner() -> str:
        runs.append("inner")
        raise ConnectionError

    for function in (outer, inner, outer, inner):
        with pytest.raises(ConnectionError):
            function()
    assert runs.count("outer") == 4
    assert runs.count("inner") == 4


def test_stacked_async_keeps_its_signature_and_caches(clock: FakeClock) -> None:
    """Stacked on an async function, both orders stay coroutine functions with its signature."""
    runs: list[str] = []

    async def fetch(url: str, *, retries: int = 0) -> str:
        runs.append(url)
        if runs.count(url) == 1:
            raise ConnectionError
        return url.upper()

    outer = retry(on=ConnectionError, wait=wait.none())(cached(ttl=60)(fetch))
    inner = cached(ttl=60)(retry(on=ConnectionError, wait=wait.none())(fetch))
    for stacked in (outer, inner):
        assert inspect.iscoroutinefunction(stacked)
        assert inspect.signature(stacked) == inspect.signature(fetch)

    async def main() -> list[str]:
        return [await outer("a"), await outer("a"), await inner("b"), await inner("b")]

    assert run(main()) == ["A", "A", "B", "B"]
    assert runs == ["a", "a", "b", "b"]
