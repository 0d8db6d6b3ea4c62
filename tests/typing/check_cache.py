"""Typing checks: ``@cached`` keeps the signature of what it decorates and types invalidation.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors. The ``check_*`` functions run on the default memory
backend, which the test plugin resets after each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import assert_type

from resilient import (
    Cached,
    CachePolicy,
    CacheStatus,
    ainvalidate_tags,
    cache_status,
    cached,
    invalidate_tags,
)
from resilient.backends import MemoryBackend


@cached(ttl=60)
def profile(user_id: int, *, lang: str = "en") -> dict[str, str]:
    return {"id": str(user_id), "lang": lang}


@cached(ttl=timedelta(minutes=5), stale_ttl=30, tags=["user:{user_id}"])
async def aprofile(user_id: int) -> bytes:
    return str(user_id).encode()


@cached(CachePolicy(ttl=60), maxsize=10, backend=MemoryBackend())
def from_policy(count: int) -> list[int]:
    return [count]


@cached(ttl=60, local_ttl=timedelta(seconds=5))
def near(sku: str) -> int:
    return len(sku)


@cached(ttl=60, key="{user_id}", condition=lambda result: result is not None, cache_none=False)
def maybe(request: object, user_id: int) -> int | None:
    return user_id or None


@cached(ttl=60, key=lambda request, ids: {"ids": sorted(ids)})
def by_ids(request: object, ids: list[int]) -> int:
    return len(ids)


class Repo:
    """A class with every kind of cached method."""

    def __init__(self, base: str) -> None:
        self.base = base

    @cached(ttl=60)
    def get(self, path: str) -> str:
        return self.base + path

    @cached(ttl=60)
    async def aget(self, path: str) -> str:
        return self.base + path

    @classmethod
    @cached(ttl=60)
    def make(cls, base: str) -> Repo:
        return cls(base)

    @staticmethod
    @cached(ttl=60)
    def join(left: str, right: str) -> str:
        return left + right


def check_sync_function() -> None:
    """A cached def keeps its parameters and return type; invalidate takes the same ones."""
    assert_type(profile(1), dict[str, str])
    assert_type(profile(1, lang="fr"), dict[str, str])
    assert_type(near("A-17"), int)
    keep: Callable[[int], dict[str, str]] = profile
    assert keep(2) == {"id": "2", "lang": "en"}
    assert_type(profile.invalidate(1, lang="fr"), None)
    assert_type(profile.invalidate_all(), None)
    assert_type(from_policy(3), list[int])
    assert_type(maybe(object(), 0), int | None)
    assert_type(by_ids(object(), [2, 1]), int)
    assert profile.__name__ == "profile"


def check_async_function() -> None:
    """A cached async def is awaited for its own type and runs under asyncio.run."""

    async def main() -> bytes:
        result = await aprofile(1)
        assert_type(result, bytes)
        assert_type(await aprofile.ainvalidate(1), None)
        assert_type(await aprofile.ainvalidate_all(), None)
        assert_type(await ainvalidate_tags("user:1"), int)
        return result

    assert asyncio.run(main()) == b"1"
    assert asyncio.run(aprofile(2)) == b"2"


def check_methods() -> None:
    """Methods, classmethods and staticmethods keep their types; self and cls are bound."""
    repo = Repo("https://x/")
    assert_type(repo.get("y"), str)
    assert_type(repo.get.invalidate("y"), None)
    assert_type(Repo.join("a", "b"), str)
    # Known limits of mypy with a callable protocol under @classmethod / @staticmethod: it
    # does not bind cls, and binds an instance it should not. The calls work at run time.
    assert Repo.make("https://z/").base == "https://z/"  # type: ignore[call-arg, arg-type]
    assert repo.join("a", "b") == "ab"  # type: ignore[call-arg]
    Repo.join.invalidate("a", "b")
    assert asyncio.run(repo.aget("y")) == "https://x/y"


def check_cached_as_a_type() -> None:
    """Cached[P, R] annotates a cached function: call it and invalidate it with P."""

    def refresh(function: Cached[[int], int], value: int) -> int:
        function.invalidate(value)
        return function(value)

    @cached(ttl=1)
    def double(x: int) -> int:
        return 2 * x

    assert refresh(double, 4) == 8


def check_status_and_tags() -> None:
    """cache_status() is a CacheStatus or None; invalidate_tags counts what it dropped."""
    profile(5)
    status = cache_status()
    assert_type(status, CacheStatus | None)
    assert status is not None
    assert_type(status.value, str)
    assert_type(invalidate_tags("users", "user:5"), int)
    assert_type(invalidate_tags("users", backend=MemoryBackend()), int)


def check_policy_fields() -> None:
    """CachePolicy exposes its normalised fields with precise types."""
    policy = CachePolicy(
        ttl=timedelta(seconds=30), stale_ttl=5, tags=["users"], name="profiles", cache_none=False
    )
    assert_type(policy.ttl, float)
    assert_type(policy.stale_ttl, float)
    assert_type(policy.maxsize, int)
    assert_type(policy.early_refresh, float)
    assert_type(policy.tags, tuple[str, ...])
    assert_type(policy.cache_none, bool)
    assert_type(policy.name, str | None)
    assert_type(policy.stored_ttl, float)
    assert_type(policy.stores(None), bool)
    assert policy.ttl == 30.0


def _misuse_calls() -> None:
    """Calling a cached function or its invalidate wrongly is a type error (never run)."""
    profile("1")  # type: ignore[arg-type]
    profile()  # type: ignore[call-arg]
    profile(1, "fr")  # type: ignore[call-arg]  # lang is keyword-only
    profile(1, language="fr")  # type: ignore[call-arg]
    _: str = profile(1)  # type: ignore[assignment]
    profile.invalidate("1")  # type: ignore[arg-type]
    profile.invalidate()  # type: ignore[call-arg]
    profile.invalidate(1, region="eu")  # type: ignore[call-arg]
    __: Callable[[str], dict[str, str]] = profile  # type: ignore[assignment]
    pending = aprofile("1")  # type: ignore[arg-type]
    del pending
    from_policy("3")  # type: ignore[arg-type]


async def _misuse_async() -> None:
    """An awaited result keeps its type; ainvalidate checks its arguments (never run)."""
    text: str = await aprofile(1)  # type: ignore[assignment]
    await aprofile.ainvalidate("1")  # type: ignore[arg-type]
    del text


def _misuse_methods(repo: Repo) -> None:
    """Bound methods check their arguments, self and cls excluded (never run)."""
    repo.get(1)  # type: ignore[arg-type]
    repo.get()  # type: ignore[call-arg]
    repo.get.invalidate(1)  # type: ignore[arg-type]
    Repo.join("a")  # type: ignore[call-arg]
    number: int = repo.get("a")  # type: ignore[assignment]
    del number


def _misuse_options() -> None:
    """Decorator options are typed: wrong types and misspelt names are errors (never run)."""
    cached(ttl="5")  # type: ignore[arg-type]
    cached(ttl=5, maxsize="10")  # type: ignore[arg-type]
    cached(ttl=5, tlt=3)  # type: ignore[call-arg]
    cached(ttl=5, tags="users")  # type: ignore[arg-type]
    cached(ttl=5, condition=5)  # type: ignore[arg-type]
    cached(ttl=5, backend=object())  # type: ignore[arg-type]
    cached(ttl=5, cache_none="no")  # type: ignore[arg-type]
    cached(ttl=5, local_ttl="5")  # type: ignore[arg-type]
    cached(60)  # type: ignore[arg-type]
    cached(ttl=5)(42)  # type: ignore[call-overload]
    CachePolicy(maxsize=3)  # type: ignore[call-arg]
    CachePolicy(ttl="5")  # type: ignore[arg-type]
    CachePolicy(ttl=5, maxsize="10")  # type: ignore[arg-type]
    CachePolicy(ttl=5, tags="users")  # type: ignore[arg-type]
    CachePolicy(ttl=5, key=42)  # type: ignore[arg-type]
    invalidate_tags(["users"])  # type: ignore[arg-type]
