"""`resilient.admin`: per-function cache statistics of this process, and purges by tag.

The purge reaches the values other processes stored on a real Redis, and the local copies
other processes keep (`local_ttl=`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from cache_support import PATIENCE, eventually, run
from redis_fixtures import Backends

import resilient
from resilient.admin import Admin, CacheInfo, count_cache_hits
from resilient.backends import MemoryBackend
from resilient.testing import FakeClock


def unique(stem: str) -> str:
    """Return a function name no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def counting() -> Iterator[None]:
    """Hits counted during the test (they are not by default)."""
    count_cache_hits()
    yield
    count_cache_hits(enabled=False)


def stats_of(name: str, admin: Admin | None = None) -> CacheInfo:
    """The statistics of the cached function *name*."""
    (info,) = [info for info in (admin or Admin()).cache_stats() if info.name == name]
    return info


@pytest.mark.usefixtures("counting")
def test_hits_and_misses_are_counted_per_function() -> None:
    """Two misses and three hits of one function; another function counted apart."""
    name, other = unique("profile"), unique("rates")

    @resilient.cached(ttl=60, name=name)
    def profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @resilient.cached(ttl=60, name=other)
    def rates(currency: str) -> float:
        return 1.1

    profile(1)
    profile(2)
    for _ in range(3):
        profile(1)
    rates("EUR")
    assert stats_of(name) == CacheInfo(
        name=name,
        hits=3,
        misses=2,
        stale=0,
        bypassed=0,
        refreshed=0,
        refresh_failed=0,
        entries=2,
    )
    assert (stats_of(other).misses, stats_of(other).hits) == (1, 0)
    assert json.loads(json.dumps(stats_of(name).to_dict()))["hits"] == 3


@pytest.mark.usefixtures("counting")
def test_async_hits_stale_answers_and_refreshes_are_counted(clock: FakeClock) -> None:
    """An async function: a miss, a hit, then a stale answer while its refresh runs."""
    name = unique("quotes")
    versions = iter(range(100))

    @resilient.cached(ttl=10, stale_ttl=60, name=name)
    async def quote(symbol: str) -> int:
        return next(versions)

    async def main() -> list[int]:
        values = [await quote("A"), await quote("A")]
        clock.advance(11)
        values.append(await quote("A"))  # stale: served, refreshed in the background
        for _ in range(100):
            if stats_of(name).refreshed:
                break
            await asyncio.sleep(0)
        values.append(await quote("A"))
        return values

    assert run(main()) == [0, 0, 0, 1]
    info = stats_of(name)
    assert (info.misses, info.hits, info.stale, info.refreshed) == (1, 2, 1, 1)


def test_hits_are_counted_only_while_counting_is_on() -> None:
    """Off by default (hits read None, misses count); on, from the very next hit."""
    name = unique("switch")

    @resilient.cached(ttl=60, name=name)
    def square(x: int) -> int:
        return x * x

    square(2)
    square(2)
    assert (stats_of(name).hits, stats_of(name).misses) == (None, 1)
    count_cache_hits()
    try:
        square(2)  # its hit path's snapshot was taken with counting off: counted all the same
        square(2)
        assert stats_of(name).hits == 2
    finally:
        count_cache_hits(enabled=False)
    square(2)
    assert stats_of(name).hits is None
    with pytest.raises(TypeError, match="True or False"):
        count_cache_hits("yes")  # type: ignore[arg-type]  # the mistake under test


def test_calls_past_a_backend_that_fails_are_counted_bypassed(backends: Backends) -> None:
    """Each call past an unreachable Redis runs the function, counted as bypassed."""
    name = unique("down")
    backend = backends("redis://127.0.0.1:1", socket_connect_timeout=0.05)

    @resilient.cached(ttl=60, name=name, backend=backend)
    def value() -> int:
        return 7

    assert [value() for _ in range(4)] == [7] * 4
    info = stats_of(name)
    assert (info.bypassed, info.hits, info.misses) == (4, None, 0)


def test_entries_are_this_process_values_for_the_admins_backend() -> None:
    """A memory backend's region counts its values; another backend keeps none of them."""
    name = unique("entries")

    @resilient.cached(ttl=60, name=name)
    def square(x: int) -> int:
        return x * x

    for x in range(5):
        square(x)
    assert stats_of(name).entries == 5
    assert stats_of(name, Admin(MemoryBackend())).entries is None


def test_purging_a_tag_drops_its_values_only() -> None:
    """purge_cache drops the values stored under the tag; the others stay hits."""
    name = unique("catalog")
    runs: list[int] = []

    @resilient.cached(ttl=60, name=name, tags=["product:{product_id}"])
    def product(product_id: int) -> dict[str, int]:
        runs.append(product_id)
        return {"id": product_id}

    product(1)
    product(2)
    assert Admin().purge_cache("product:1") == 1
    product(1)
    product(2)
    assert runs == [1, 2, 1]


def test_purge_by_tag_from_async_code_and_bad_tags() -> None:
    """apurge_cache does what purge_cache does; a tag that is not a string is a TypeError."""
    name = unique("async-tags")

    @resilient.cached(ttl=60, name=name, tags=["all-products"])
    def product(product_id: int) -> int:
        return product_id

    product(1)
    product(2)
    assert run(Admin().apurge_cache("all-products", "unused")) == 2
    with pytest.raises(TypeError, match="not a string"):
        Admin().purge_cache(3)  # type: ignore[arg-type]  # the mistake under test


# on Redis, across processes ---------------------------------------------------------------

# Caches prices on the Redis at argv[1] with a local tier, tagged. For each line "get SKU" of its
# input it prints the price, how it was answered, and how many copies its local tier holds.
READER = textwrap.dedent(
    """
    import sys
    import resilient
    from resilient.admin import Admin
    from resilient.backends.redis import RedisBackend

    backend = RedisBackend.from_url(sys.argv[1])
    version = {"n": 0}

    @resilient.cached(ttl=60, local_ttl=30, backend=backend, tags=["price:{sku}"], name="price")
    def price(sku):
        version["n"] += 1
        return f"{sku}@{version['n']}"

    for line in sys.stdin:
        value = price(line.split()[1])
        (stats,) = Admin(backend).cache_stats()
        print(value, resilient.cache_status().value, stats.entries, flush=True)
    """
)


@contextmanager
def reader(redis_url: str) -> Iterator[Callable[[str], list[str]]]:
    """Run READER during the block; yield a function asking it for a SKU's price."""
    process = subprocess.Popen(
        [sys.executable, "-c", READER, redis_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None

    def ask(sku: str) -> list[str]:
        stdin.write(f"get {sku}\n")
        stdin.flush()
        return stdout.readline().split()

    try:
        yield ask
    finally:
        _, errors = process.communicate(timeout=PATIENCE)  # closes its input: it ends
    assert process.returncode == 0, errors


def test_a_purge_reaches_redis_and_the_local_copies_of_other_processes(
    redis_url: str, backends: Backends
) -> None:
    """Another process's values, one kept in its local tier: a purge from here drops both."""
    with reader(redis_url) as ask:
        assert ask("A") == ["A@1", "miss", "0"]  # not kept before its subscription is live
        assert eventually(lambda: ask("A") == ["A@1", "hit", "1"])  # kept: answered locally
        assert ask("B") == ["B@2", "miss", "2"]
        assert Admin(backends(redis_url)).purge_cache("price:A", "price:B") == 2
        assert eventually(lambda: ask("A")[:2] == ["A@3", "miss"])
        assert ask("B")[:2] == ["B@4", "miss"]
