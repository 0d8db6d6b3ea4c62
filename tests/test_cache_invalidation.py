"""@cached on the memory backend: invalidating one call, a whole function, and tags."""

from __future__ import annotations

from cache_support import run

from resilient import (
    CacheStatus,
    ainvalidate_tags,
    cache_status,
    cached,
    invalidate_tags,
)
from resilient.backends import MemoryBackend
from resilient.testing import FakeClock

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
