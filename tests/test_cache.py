"""@cached on the memory backend: hits, expiry, eviction, invalidation, stale values, stampedes."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from cache_support import PATIENCE, EventLog, run

import resilient
from resilient import (
    CachePolicy,
    CacheStatus,
    ainvalidate_tags,
    cache_status,
    cached,
    invalidate_tags,
    retry,
    wait,
)
from resilient._config import DEFAULTS
from resilient.backends import MemoryBackend
from resilient.events import CacheHit, CacheMissed, CacheRefreshed, CacheStaleServed
from resilient.testing import FakeClock, capture_events

T = TypeVar("T")

# Real seconds given to threads to reach a call already in flight before it is let finish.
GATHER = 0.2


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """A fake clock installed for the test: entries expire only when the test says so."""
    return fake_clock


@pytest.fixture
def log() -> EventLog:
    """An installed observer that records every event."""
    recorder = EventLog()
    resilient.configure(observers=[recorder])
    return recorder


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


# --- invalidation ------------------------------------------------------------------------------


def test_invalidate_drops_one_call(clock: FakeClock) -> None:
    """f.invalidate(args) drops that call's value (in any argument form), and only that one."""
    runs: list[tuple[int, str]] = []

    @cached(ttl=60)
    def f(x: int, lang: str = "en") -> str:
        runs.append((x, lang))
        return f"{x}{lang}{len(runs)}"

    assert f(1) == "1en1"
    assert f(2) == "2en2"
    f.invalidate(x=1, lang="en")
    assert f(1) == "1en3"
    assert f(2) == "2en2"
    f.invalidate(2)
    assert f(2, "en") == "2en4"


def test_invalidate_follows_the_key_template(clock: FakeClock) -> None:
    """With key='{user_id}', invalidate(user_id) drops the one entry that call shares."""
    runs: list[int] = []

    @cached(ttl=60, key="{user_id}")
    def profile(user_id: int, lang: str = "en") -> int:
        runs.append(user_id)
        return user_id

    profile(1, "fr")
    profile.invalidate(1)
    profile(1, "de")
    assert cache_status() is CacheStatus.MISS
    assert runs == [1, 1]


def test_invalidating_an_absent_value_is_harmless(clock: FakeClock) -> None:
    """Invalidating a call that was never cached does nothing and raises nothing."""

    @cached(ttl=60)
    def f(x: int) -> int:
        return x

    f.invalidate(5)
    f.invalidate_all()
    assert f(5) == 5


def test_invalidate_with_unhashable_arguments(clock: FakeClock) -> None:
    """A call with list or dict arguments can be invalidated like any other."""
    runs: list[list[int]] = []

    @cached(ttl=60)
    def total(numbers: list[int]) -> int:
        runs.append(numbers)
        return sum(numbers)

    total([1, 2])
    total.invalidate([1, 2])
    total([1, 2])
    assert len(runs) == 2


def test_invalidate_a_method_through_any_instance(clock: FakeClock) -> None:
    """obj.method.invalidate(args) drops the value every instance shares."""
    runs: list[int] = []

    class Repo:
        @cached(ttl=60)
        def load(self, item: int) -> int:
            runs.append(item)
            return len(runs)

    first, second = Repo(), Repo()
    assert first.load(1) == 1
    second.load.invalidate(1)
    assert first.load(1) == 2
    first.load.invalidate_all()
    assert second.load(1) == 3


def test_a_method_called_through_its_class_is_the_same_call(clock: FakeClock) -> None:
    """Repo.load(repo, 1) is repo.load(1): one entry, which Repo.load.invalidate(repo, 1) drops."""
    runs: list[int] = []

    class Repo:
        @cached(ttl=60)
        def load(self, item: int) -> int:
            runs.append(item)
            return len(runs)

    repo = Repo()
    assert repo.load(1) == 1
    assert Repo.load(repo, 1) == 1
    assert cache_status() is CacheStatus.HIT
    Repo.load.invalidate(repo, 1)
    assert repo.load(1) == 2
    assert cache_status() is CacheStatus.MISS


def test_ainvalidate_from_async_code(clock: FakeClock) -> None:
    """ainvalidate and ainvalidate_all drop values from a coroutine."""
    runs: list[int] = []

    @cached(ttl=60)
    async def load(item: int) -> int:
        runs.append(item)
        return len(runs)

    async def main() -> list[int]:
        values = [await load(1), await load(2)]
        await load.ainvalidate(1)
        values += [await load(1), await load(2)]
        await load.ainvalidate_all()
        values += [await load(1), await load(2)]
        return values

    assert run(main()) == [1, 2, 3, 2, 4, 5]


def test_invalidate_all_drops_only_this_functions_values(clock: FakeClock) -> None:
    """f.invalidate_all() empties f's entries and leaves other functions' alone."""
    runs: list[str] = []

    @cached(ttl=60)
    def f(x: int) -> int:
        runs.append(f"f{x}")
        return x

    @cached(ttl=60)
    def g(x: int) -> int:
        runs.append(f"g{x}")
        return x

    for x in (1, 2):
        f(x)
        g(x)
    f.invalidate_all()
    for x in (1, 2):
        f(x)
        g(x)
    assert runs == ["f1", "g1", "f2", "g2", "f1", "f2"]


# --- tags --------------------------------------------------------------------------------------


def test_static_tags_invalidate_every_tagged_function(clock: FakeClock) -> None:
    """invalidate_tags('users') drops every value stored under that tag, in any function."""
    runs: list[str] = []

    @cached(ttl=60, tags=["users"])
    def profile(user_id: int) -> str:
        runs.append(f"profile{user_id}")
        return "p"

    @cached(ttl=60, tags=["users", "billing"])
    def invoices(user_id: int) -> str:
        runs.append(f"invoices{user_id}")
        return "i"

    @cached(ttl=60, tags=["billing"])
    def prices() -> str:
        runs.append("prices")
        return "c"

    profile(1)
    profile(2)
    invoices(1)
    prices()
    assert invalidate_tags("users") == 3
    profile(1)
    profile(2)
    invoices(1)
    prices()
    assert runs == [
        *("profile1", "profile2", "invoices1", "prices"),
        *("profile1", "profile2", "invoices1"),
    ]
    assert invalidate_tags("nobody-uses-this") == 0


def test_tag_templates_are_filled_in_per_call(clock: FakeClock) -> None:
    """tags=['user:{user_id}'] lets one user's values be dropped and no one else's."""
    runs: list[tuple[int, str]] = []

    @cached(ttl=60, tags=["user:{user_id}"])
    def setting(user_id: int, name: str) -> str:
        runs.append((user_id, name))
        return name

    setting(1, "theme")
    setting(1, "lang")
    setting(2, "theme")
    assert invalidate_tags("user:1") == 2
    setting(1, "theme")
    setting(1, "lang")
    setting(2, "theme")
    assert runs == [(1, "theme"), (1, "lang"), (2, "theme"), (1, "theme"), (1, "lang")]


def test_several_tags_at_once(clock: FakeClock) -> None:
    """invalidate_tags(a, b) drops values under either tag and counts each value once."""

    @cached(ttl=60, tags=["a", "b"])
    def both() -> int:
        return 1

    @cached(ttl=60, tags=["b"])
    def only_b() -> int:
        return 2

    both()
    only_b()
    assert invalidate_tags("a", "b") == 2
    assert invalidate_tags("a", "b") == 0


def test_ainvalidate_tags_from_async_code(clock: FakeClock) -> None:
    """ainvalidate_tags drops tagged values from a coroutine."""
    runs: list[int] = []

    @cached(ttl=60, tags=["user:{user_id}"])
    async def profile(user_id: int) -> int:
        runs.append(user_id)
        return user_id

    async def main() -> int:
        await profile(1)
        dropped = await ainvalidate_tags("user:1")
        await profile(1)
        return dropped

    assert run(main()) == 1
    assert runs == [1, 1]


def test_invalidate_tags_on_a_given_backend(clock: FakeClock) -> None:
    """invalidate_tags(backend=) reaches functions cached on that backend, not the default."""
    backend = MemoryBackend()
    runs: list[int] = []

    @cached(ttl=60, tags=["t"], backend=backend)
    def f() -> int:
        runs.append(1)
        return 1

    f()
    assert invalidate_tags("t") == 0
    f()
    assert invalidate_tags("t", backend=backend) == 1
    f()
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


# --- stale-while-revalidate --------------------------------------------------------------------


def test_stale_value_is_served_while_exactly_one_refresh_runs(
    clock: FakeClock, log: EventLog
) -> None:
    """Past ttl, callers get the stale value at once while one background refresh runs."""
    release = threading.Event()
    started: list[int] = []

    @cached(ttl=10, stale_ttl=20, name="version")
    def version() -> int:
        started.append(1)
        if len(started) > 1:
            assert release.wait(PATIENCE)  # the refresh is slow
        return len(started)

    assert version() == 1
    clock.advance(15)
    for _ in range(10):
        assert version() == 1
        assert cache_status() is CacheStatus.STALE
    release.set()
    log.wait_for(CacheRefreshed)
    assert len(started) == 2
    assert version() == 2
    assert cache_status() is CacheStatus.HIT
    assert len(started) == 2
    assert [event.reason for event in log.of(CacheStaleServed)] == ["refreshing"] * 10
    [refreshed] = log.of(CacheRefreshed)
    assert (refreshed.policy, refreshed.outcome, refreshed.error_type) == (
        "version",
        "success",
        None,
    )


def test_async_stale_value_is_served_while_exactly_one_refresh_runs(
    clock: FakeClock, log: EventLog
) -> None:
    """Async callers get the stale value while one refresh task runs, then the new value."""
    release = asyncio.Event()
    started: list[int] = []

    @cached(ttl=10, stale_ttl=20)
    async def version() -> int:
        started.append(1)
        if len(started) > 1:
            await release.wait()
        return len(started)

    async def main() -> list[tuple[int, CacheStatus | None]]:
        seen = [(await version(), cache_status())]
        clock.advance(15)
        for _ in range(10):
            seen.append((await version(), cache_status()))
            await asyncio.sleep(0)  # the refresh task gets to run, and waits
        assert len(started) == 2
        release.set()
        await log.settle(CacheRefreshed)
        seen.append((await version(), cache_status()))
        return seen

    assert run(main()) == [
        (1, CacheStatus.MISS),
        *[(1, CacheStatus.STALE)] * 10,
        (2, CacheStatus.HIT),
    ]
    assert len(started) == 2


def test_stale_value_is_served_only_until_stale_ttl_ends(clock: FakeClock) -> None:
    """A value past ttl + stale_ttl is gone: the caller waits for a fresh one (a miss)."""
    runs: list[int] = []

    @cached(ttl=10, stale_ttl=5)
    def version() -> int:
        runs.append(1)
        return len(runs)

    version()
    clock.advance(15)
    assert version() == 2
    assert cache_status() is CacheStatus.MISS


def test_refresh_failure_keeps_serving_the_stale_value(clock: FakeClock, log: EventLog) -> None:
    """stale-if-error: while refreshes fail the stale value is served until stale_ttl ends."""
    failing = threading.Event()
    runs: list[int] = []

    @cached(ttl=10, stale_ttl=20)
    def rates() -> str:
        runs.append(1)
        if failing.is_set():
            raise ConnectionError("rates service down")
        return f"rates{len(runs)}"

    assert rates() == "rates1"
    failing.set()
    for step, moment in enumerate((15.0, 20.0, 29.999), start=1):
        clock.advance(moment - clock.monotonic())
        assert rates() == "rates1"
        assert cache_status() is CacheStatus.STALE
        log.wait_for(CacheRefreshed, count=step)
    assert [(event.outcome, event.error_type) for event in log.of(CacheRefreshed)] == [
        ("failure", "ConnectionError")
    ] * 3
    clock.advance(30.0 - clock.monotonic())
    with pytest.raises(ConnectionError, match="rates service down"):
        rates()
    failing.clear()
    assert rates() == "rates6"  # the first run, three refreshes, the failed miss, this one
    assert cache_status() is CacheStatus.MISS


def test_async_refresh_failure_keeps_serving_the_stale_value(
    clock: FakeClock, log: EventLog
) -> None:
    """Async stale-if-error: the stale value until stale_ttl ends, then the error."""
    failing = False

    @cached(ttl=10, stale_ttl=20)
    async def rates() -> str:
        if failing:
            raise ConnectionError("rates service down")
        return "rates"

    async def main() -> None:
        nonlocal failing
        assert await rates() == "rates"
        failing = True
        clock.advance(15)
        assert await rates() == "rates"
        await log.settle(CacheRefreshed)
        clock.advance(14.999)
        assert await rates() == "rates"
        assert cache_status() is CacheStatus.STALE
        await log.settle(CacheRefreshed, count=2)
        clock.advance(0.001)
        with pytest.raises(ConnectionError):
            await rates()

    run(main())
    assert [event.outcome for event in log.of(CacheRefreshed)] == ["failure", "failure"]


def test_stale_value_after_a_failed_refresh_says_so(clock: FakeClock, log: EventLog) -> None:
    """A stale value served after the last refresh failed is reported as 'refresh_failed'."""
    failing = threading.Event()

    @cached(ttl=10, stale_ttl=20)
    def rates() -> str:
        if failing.is_set():
            raise ConnectionError("down")
        return "rates"

    rates()
    failing.set()
    clock.advance(15)
    rates()
    log.wait_for(CacheRefreshed)
    clock.advance(1)
    rates()
    assert [event.reason for event in log.of(CacheStaleServed)] == [
        "refreshing",
        "refresh_failed",
    ]


# --- early refresh -----------------------------------------------------------------------------


def test_an_expensive_value_is_refreshed_just_before_it_expires(
    clock: FakeClock, log: EventLog
) -> None:
    """Right before expiry a costly value is refreshed in the background; callers still hit."""
    runs: list[int] = []

    @cached(ttl=100)
    def report() -> int:
        clock.advance(1.0)  # computing it takes a second
        runs.append(1)
        return len(runs)

    assert report() == 1  # stored at t=1, fresh until t=101
    clock.advance(50)
    assert report() == 1
    assert log.of(CacheRefreshed) == []
    clock.advance(50 - 1e-9)  # a nanosecond before expiry: a refresh is all but certain
    assert report() == 1
    assert cache_status() is CacheStatus.HIT
    log.wait_for(CacheRefreshed)
    assert report() == 2
    assert cache_status() is CacheStatus.HIT
    assert len(runs) == 2


def test_early_refresh_zero_waits_for_expiry(clock: FakeClock, log: EventLog) -> None:
    """With early_refresh=0 a value is served untouched until ttl, then computed on a miss."""
    runs: list[int] = []

    @cached(ttl=100, early_refresh=0)
    def report() -> int:
        clock.advance(1.0)
        runs.append(1)
        return len(runs)

    report()
    clock.advance(100 - 1e-9)
    assert report() == 1
    assert cache_status() is CacheStatus.HIT
    clock.advance(1e-9)
    assert report() == 2
    assert cache_status() is CacheStatus.MISS
    assert log.of(CacheRefreshed) == []


# --- stampedes ---------------------------------------------------------------------------------


def test_a_thousand_concurrent_async_callers_run_the_function_once(clock: FakeClock) -> None:
    """1,000 tasks missing one cold key share a single execution and all get its value."""
    gate = asyncio.Event()
    started: list[int] = []

    @cached(ttl=60)
    async def expensive(key: str) -> dict[str, str]:
        started.append(1)
        await gate.wait()
        return {"key": key}

    async def one() -> tuple[dict[str, str], CacheStatus | None]:
        return await expensive("cold"), cache_status()

    async def main() -> list[tuple[dict[str, str], CacheStatus | None]]:
        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await asyncio.sleep(0)  # every task is now inside its call, waiting
        gate.set()
        return await asyncio.gather(*tasks)

    results = run(main())
    assert len(started) == 1
    assert all(value is results[0][0] for value, _ in results)
    assert {status for _, status in results} == {CacheStatus.MISS}


def test_a_hundred_concurrent_threads_run_the_function_once(clock: FakeClock) -> None:
    """100 threads missing one cold key share a single execution and all get its value."""
    start = threading.Barrier(100)
    release = threading.Event()
    started: list[int] = []
    results: list[object] = []

    @cached(ttl=60)
    def expensive() -> object:
        started.append(1)
        assert release.wait(PATIENCE)
        return object()

    def caller() -> None:
        start.wait(PATIENCE)
        results.append(expensive())

    threads = [threading.Thread(target=caller) for _ in range(100)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)  # let every thread reach the call in flight
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert len(results) == 100
    assert all(result is results[0] for result in results)


def test_async_callers_in_several_event_loops_share_one_execution(clock: FakeClock) -> None:
    """Tasks of four event loops in four threads missing one key share a single execution."""
    release = threading.Event()
    start = threading.Barrier(4)
    started: list[int] = []
    results: list[str] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        assert await asyncio.to_thread(release.wait, PATIENCE)
        return "value"

    async def loop_main() -> list[str]:
        return list(await asyncio.gather(*(expensive() for _ in range(25))))

    def thread_main() -> None:
        start.wait(PATIENCE)
        results.extend(run(loop_main()))

    threads = [threading.Thread(target=thread_main) for _ in range(4)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert results == ["value"] * 100


def test_the_leaders_exception_reaches_every_async_follower(clock: FakeClock) -> None:
    """When the one execution raises, every concurrent caller gets that same exception."""
    gate = asyncio.Event()
    error = TimeoutError("upstream timed out")
    started: list[int] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        await gate.wait()
        if len(started) == 1:
            raise error
        return "recovered"

    async def main() -> list[BaseException | str]:
        tasks = [asyncio.create_task(expensive()) for _ in range(50)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return [*outcomes, await expensive()]

    outcomes = run(main())
    assert all(outcome is error for outcome in outcomes[:50])
    assert outcomes[50] == "recovered"
    assert len(started) == 2


def test_the_leaders_exception_reaches_every_thread(clock: FakeClock) -> None:
    """Threads waiting on a failing execution each raise the leader's exception."""
    start = threading.Barrier(20)
    release = threading.Event()
    error = ConnectionError("refused")
    started: list[int] = []
    outcomes: list[BaseException] = []

    @cached(ttl=60)
    def expensive() -> str:
        started.append(1)
        assert release.wait(PATIENCE)
        raise error

    def caller() -> None:
        start.wait(PATIENCE)
        try:
            expensive()
        except ConnectionError as raised:
            outcomes.append(raised)

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert len(outcomes) == 20
    assert all(outcome is error for outcome in outcomes)


def test_a_cancelled_leader_neither_cancels_nor_hangs_its_followers(clock: FakeClock) -> None:
    """Cancelling the task computing a value wakes its followers; one of them computes it."""
    gate = asyncio.Event()
    started: list[int] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        await gate.wait()
        return "value"

    async def main() -> list[str]:
        leader = asyncio.create_task(expensive())
        await asyncio.sleep(0)
        followers = [asyncio.create_task(expensive()) for _ in range(10)]
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*followers), PATIENCE)

    assert run(main()) == ["value"] * 10
    assert len(started) == 2


def test_a_leader_thread_ended_by_systemexit_lets_a_follower_run(clock: FakeClock) -> None:
    """A leader leaving with a BaseException abandons the call; a follower runs it instead."""
    entered = threading.Event()
    release = threading.Event()
    started: list[int] = []
    results: list[str] = []
    exits: list[SystemExit] = []

    @cached(ttl=60)
    def expensive() -> str:
        started.append(1)
        if len(started) == 1:
            entered.set()
            assert release.wait(PATIENCE)
            raise SystemExit(1)
        return "value"

    def leader() -> None:
        try:
            expensive()
        except SystemExit as leaving:
            exits.append(leaving)

    def follower() -> None:
        results.append(expensive())

    first = threading.Thread(target=leader)
    first.start()
    assert entered.wait(PATIENCE)
    followers = [threading.Thread(target=follower) for _ in range(5)]
    for thread in followers:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in [first, *followers]:
        thread.join(PATIENCE)
    assert len(exits) == 1
    assert results == ["value"] * 5
    assert len(started) == 2


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
