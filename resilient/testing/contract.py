"""A pytest suite that checks a backend keeps the promises of the backend protocols.

Subclass :class:`BackendContract` in a test module and give the subclass a ``backend`` fixture
that returns (or yields) the backend to check. pytest then runs every check twice: through the
sync methods of :class:`resilient.typing.Backend`, and through the coroutines of
:class:`resilient.typing.AsyncBackend`, awaited in a real event loop where other tasks run
concurrently (so a coroutine that blocks its loop fails the waiting checks). The suite needs
pytest, and real time: it sleeps past short TTLs (0.3 s), so run it with the system clock.

The checks cover the protocols' promises only, nothing specific to one store. Each uses keys
of its own, random and with a hash tag (``"contract:value:{4f0c...}"``), so the backend may
hold other data, and a sharded store keeps each key with the keys derived from it. Example::

    # tests/test_my_backend.py
    import pytest
    from resilient.testing.contract import BackendContract

    from myapp.backends import MyBackend


    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            backend = MyBackend("memcached://localhost")
            yield backend
            backend.close()

Override the class attribute ``key_prefix`` (``"contract"`` by default) if your backend only
accepts keys under a namespace of its own. A backend that implements the optional protocols
gets their checks by subclassing :class:`BroadcasterContract`, :class:`InspectorContract` and
:class:`ExtenderContract` too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, ClassVar, Final

import pytest

from ..backends._types import Claim, Fetched, Locked, Peeked, Throttled, Versioned

__all__ = ["BackendContract", "BroadcasterContract", "ExtenderContract", "InspectorContract"]

_ASYNC_NAMES: Final = {
    "get": "aget",
    "put": "aput",
    "release": "arelease",
    "wait_released": "await_released",
    "delete": "adelete",
    "purge": "apurge",
    "get_versioned": "aget_versioned",
    "set_versioned": "aset_versioned",
    "throttle": "athrottle",
    "lock": "alock",
    "unlock": "aunlock",
    "extend": "aextend",
    "acquire_slot": "aacquire_slot",
    "release_slot": "arelease_slot",
    "extend_slot": "aextend_slot",
    "wait_slot": "await_slot",
    "scan": "ascan",
    "peek": "apeek",
    "extend_many": "aextend_many",
}
# Short real TTLs keep the suite quick; the sleeps past them leave room for coarse expiry.
_SHORT_TTL: Final = 0.3
_PAST_SHORT_TTL: Final = 0.6
_LONG_TTL: Final = 30.0
# Upper bounds are generous: a loaded CI machine may stall a thread for a good fraction of a
# second; the lower bounds are what the promises are about.
_SLACK: Final = 1.5
# No single call of the suite should take this long; past it, fail rather than hang.
_HANG: Final = 60.0


def _pause(seconds: float) -> None:
    time.sleep(seconds)  # noqa: TID251 - the backend under test expires entries in real time


class _LoopThread:
    """An event loop running in a thread of its own, for awaiting coroutines from a test.

    The loop runs under ``asyncio.run``, so leaving it shuts down async generators and closes
    the loop as an application's exit would.
    """

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(),), name="contract-loop", daemon=True
        )

    def __enter__(self) -> _LoopThread:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=_HANG)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start *coroutine* as a task of the loop; return a future of its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)


class _Primitives:
    """The backend's primitives, called the sync way or awaited in the loop thread."""

    def __init__(self, backend: Any, loop: _LoopThread | None) -> None:
        self._backend = backend
        self._loop = loop
        self.mode = "sync" if loop is None else "async"

    def _call(self, name: str, *args: object, **kwargs: object) -> Any:
        if self._loop is None:
            return getattr(self._backend, name)(*args, **kwargs)
        coroutine = getattr(self._backend, _ASYNC_NAMES[name])(*args, **kwargs)
        return self._loop.submit(coroutine).result(timeout=_HANG)

    def get(self, key: str, claim: Claim | None = None) -> Fetched:
        fetched = self._call("get", key, claim=claim)
        assert isinstance(fetched, Fetched), f"{self.mode} get returned {fetched!r}, not a Fetched"
        return fetched

    def put(
        self,
        key: str,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str] = (),
        token: str | None = None,
        absent: bool = False,
    ) -> bool:
        stored = self._call("put", key, value, ttl=ttl, indexes=indexes, token=token, absent=absent)
        assert stored is True or stored is False, f"{self.mode} put returned {stored!r}"
        return stored

    def release(self, key: str, token: str) -> None:
        self._call("release", key, token)

    def wait_released(self, key: str, timeout: float) -> float:
        """Wait; return the seconds it took."""
        start = time.monotonic()
        self._call("wait_released", key, timeout)
        return time.monotonic() - start

    def delete(self, keys: Sequence[str]) -> int:
        count = self._call("delete", keys)
        assert type(count) is int, f"{self.mode} delete returned {count!r}, not an int"
        return count

    def purge(self, indexes: Sequence[str]) -> int:
        count = self._call("purge", indexes)
        assert type(count) is int, f"{self.mode} purge returned {count!r}, not an int"
        return count

    def get_versioned(self, key: str) -> Versioned:
        read = self._call("get_versioned", key)
        assert isinstance(read, Versioned), f"{self.mode} get_versioned returned {read!r}"
        return read

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        written = self._call("set_versioned", key, value, version=version, ttl=ttl, writer=writer)
        assert isinstance(written, Versioned), f"{self.mode} set_versioned returned {written!r}"
        return written

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Throttled:
        decision = self._call("throttle", key, interval, burst, max_wait)
        assert isinstance(decision, Throttled), f"{self.mode} throttle returned {decision!r}"
        return decision

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        locked = self._call("lock", key, owner, ttl)
        assert isinstance(locked, Locked), f"{self.mode} lock returned {locked!r}"
        return locked

    def unlock(self, key: str, owner: str) -> bool:
        released = self._call("unlock", key, owner)
        assert type(released) is bool, f"{self.mode} unlock returned {released!r}"
        return released

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        extended = self._call("extend", key, owner, ttl)
        assert type(extended) is bool, f"{self.mode} extend returned {extended!r}"
        return extended

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        admitted = self._call("acquire_slot", key, owner, limit, ttl)
        assert type(admitted) is bool, f"{self.mode} acquire_slot returned {admitted!r}"
        return admitted

    def release_slot(self, key: str, owner: str) -> bool:
        released = self._call("release_slot", key, owner)
        assert type(released) is bool, f"{self.mode} release_slot returned {released!r}"
        return released

    def extend_slot(self, key: str, owner: str, ttl: float) -> bool:
        extended = self._call("extend_slot", key, owner, ttl)
        assert type(extended) is bool, f"{self.mode} extend_slot returned {extended!r}"
        return extended

    def wait_slot(self, key: str, limit: int, timeout: float) -> float:
        """Wait; return the seconds it took."""
        start = time.monotonic()
        self._call("wait_slot", key, limit, timeout)
        return time.monotonic() - start

    def scan(self, prefix: str, limit: int) -> list[str]:
        keys = self._call("scan", prefix, limit)
        assert isinstance(keys, list), f"{self.mode} scan returned {keys!r}, not a list"
        assert all(type(key) is str for key in keys), f"{self.mode} scan returned {keys!r}"
        return keys

    def peek(self, keys: Sequence[str]) -> list[Peeked]:
        peeked = self._call("peek", keys)
        assert isinstance(peeked, list), f"{self.mode} peek returned {peeked!r}, not a list"
        assert all(isinstance(each, Peeked) for each in peeked), f"{self.mode} peek: {peeked!r}"
        return peeked

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        outcomes = self._call("extend_many", leases)
        assert isinstance(outcomes, list), f"{self.mode} extend_many returned {outcomes!r}"
        assert all(type(each) is bool or isinstance(each, Exception) for each in outcomes), (
            f"{self.mode} extend_many returned {outcomes!r}, not bools and exceptions"
        )
        return outcomes

    def soon(self, delay: float, name: str, *args: object, **kwargs: object) -> Callable[[], None]:
        """Call primitive *name* after *delay* seconds, concurrently; return a join function.

        Sync: from another thread. Async: from another task of the same event loop.
        """
        if self._loop is None:
            method = getattr(self._backend, name)
            errors: list[BaseException] = []

            def later() -> None:
                _pause(delay)
                try:
                    method(*args, **kwargs)
                except BaseException as error:  # noqa: BLE001 - join() raises it in the test
                    errors.append(error)

            thread = threading.Thread(target=later, name=f"contract-{name}")
            thread.start()

            def join_thread() -> None:
                thread.join(timeout=_HANG)
                if errors:
                    raise errors[0]

            return join_thread

        method = getattr(self._backend, _ASYNC_NAMES[name])

        async def alater() -> None:
            await asyncio.sleep(delay)
            await method(*args, **kwargs)

        future = self._loop.submit(alater())
        return lambda: future.result(timeout=_HANG)


class _Contract:
    """What the contract suites share: the backend called both ways, fresh keys and tokens."""

    key_prefix: ClassVar[str] = "contract"
    """The start of every key the checks use; each key also gets a random hash tag."""

    @pytest.fixture(params=["sync", "async"])
    def primitives(self, request: pytest.FixtureRequest, backend: object) -> Iterator[_Primitives]:
        """The backend under test, called the sync or the async way."""
        if request.param == "sync":
            yield _Primitives(backend, None)
        else:
            with _LoopThread() as loop:
                yield _Primitives(backend, loop)

    def token(self) -> str:
        """Return a new claim token (128 random bits)."""
        return uuid.uuid4().hex


class BackendContract(_Contract):
    """The checks every backend must pass; subclass it and define a ``backend`` fixture.

    Each ``test_*`` method runs once through the sync primitives and once through the async
    ones (the ``primitives`` fixture's ``sync`` and ``async`` parameters).
    """

    def key(self, name: str = "value") -> str:
        """Return a new key no other check uses: the prefix, *name*, and a random hash tag."""
        return f"{self.key_prefix}:{name}:{{{uuid.uuid4().hex}}}"

    # reading and claiming --------------------------------------------------------------------

    def test_a_missing_key_reads_as_a_miss(self, primitives: _Primitives) -> None:
        """A key never written reads as value None, ttl None, nothing claimed."""
        assert tuple(primitives.get(self.key())) == (None, None, False, None, False)

    def test_a_claim_on_a_missing_key_is_taken(self, primitives: _Primitives) -> None:
        """Asking for the claim of a missing key takes it, and still reads no value."""
        fetched = primitives.get(self.key(), Claim(self.token(), _LONG_TTL))
        assert tuple(fetched) == (None, None, True, None, False)

    def test_a_held_claim_refuses_another_token(self, primitives: _Primitives) -> None:
        """While one token holds a key's claim, another token's request is refused.

        The refusal names the holder's token, or, from a backend that does not tell, None.
        """
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        refused = primitives.get(key, Claim(self.token(), _LONG_TTL))
        assert tuple(refused)[:3] == (None, None, False)
        assert refused.holder in (holder, None)
        assert not refused.rejected

    def test_the_holding_token_claims_again(self, primitives: _Primitives) -> None:
        """Asking again with the token that holds the claim reports it taken (a safe retry)."""
        key, token = self.key(), self.token()
        assert primitives.get(key, Claim(token, _LONG_TTL)).claimed
        assert primitives.get(key, Claim(token, _LONG_TTL)).claimed

    def test_a_claim_expires_after_its_ttl(self, primitives: _Primitives) -> None:
        """A claim never released frees itself after its ttl, so a dead holder blocks no one."""
        key = self.key()
        assert primitives.get(key, Claim(self.token(), _SHORT_TTL)).claimed
        _pause(_PAST_SHORT_TTL)
        assert primitives.get(key, Claim(self.token(), _LONG_TTL)).claimed

    def test_a_fresh_value_is_read_and_not_claimed(self, primitives: _Primitives) -> None:
        """A stored value with more than ``below`` seconds left is returned, claim not taken."""
        key = self.key()
        primitives.put(key, "fresh", ttl=_LONG_TTL)
        for below in (0.0, 1.0):
            fetched = primitives.get(key, Claim(self.token(), _LONG_TTL, below=below))
            assert fetched.value == "fresh"
            assert not fetched.claimed

    def test_below_claims_a_value_about_to_expire(self, primitives: _Primitives) -> None:
        """A value with at most ``below`` seconds left is returned and its claim is taken."""
        key = self.key()
        primitives.put(key, "stale soon", ttl=5.0)
        fetched = primitives.get(key, Claim(self.token(), _LONG_TTL, below=10.0))
        assert fetched.value == "stale soon"
        assert fetched.ttl is not None
        assert 0 < fetched.ttl <= 5.0
        assert fetched.claimed

    # storing ---------------------------------------------------------------------------------

    def test_a_nested_value_round_trips(self, primitives: _Primitives) -> None:
        """A nested value reads back equal, container types kept, with a ttl in (0, ttl]."""
        key = self.key()
        value = {
            "text": "héllo",
            "int": 2**40,
            "float": 0.25,
            "bytes": b"\x00\xff",
            "list": [1, "two", None, [3.5]],
            "tuple": (1, ("nested", None)),
            "none": None,
            "dict": {"inner": {"deeper": [True, False]}},
        }
        primitives.put(key, value, ttl=60.0)
        fetched = primitives.get(key)
        assert fetched.value == value
        assert isinstance(fetched.value, dict)
        assert isinstance(fetched.value["tuple"], tuple)
        assert isinstance(fetched.value["list"], list)
        assert fetched.ttl is not None
        assert 0 < fetched.ttl <= 60.0
        assert not fetched.claimed

    def test_a_value_expires_after_its_ttl(self, primitives: _Primitives) -> None:
        """A value is readable until its ttl passes, then the key reads as a miss."""
        key = self.key()
        primitives.put(key, [1, 2], ttl=_SHORT_TTL)
        assert primitives.get(key).value == [1, 2]
        _pause(_PAST_SHORT_TTL)
        assert tuple(primitives.get(key)) == (None, None, False, None, False)

    def test_a_put_replaces_the_value(self, primitives: _Primitives) -> None:
        """Putting a key again replaces its value and its ttl."""
        key = self.key()
        primitives.put(key, "first", ttl=_LONG_TTL)
        primitives.put(key, "second", ttl=5.0)
        fetched = primitives.get(key)
        assert fetched.value == "second"
        assert fetched.ttl is not None
        assert fetched.ttl <= 5.0

    # releasing -------------------------------------------------------------------------------

    def test_a_put_with_the_token_releases_the_claim(self, primitives: _Primitives) -> None:
        """A put carrying the holder's token frees the claim for another token."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        primitives.put(key, "filled", ttl=5.0, token=holder)
        fetched = primitives.get(key, Claim(self.token(), _LONG_TTL, below=10.0))
        assert fetched.value == "filled"
        assert fetched.claimed

    def test_a_put_if_absent_never_replaces_a_value(self, primitives: _Primitives) -> None:
        """``absent=True`` stores only over no value, says whether it stored, and releases."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        assert primitives.put(key, "first", ttl=5.0, absent=True, token=holder)
        assert primitives.put(key, "second", ttl=5.0) is True
        late = self.token()
        assert primitives.get(key, Claim(late, _LONG_TTL, below=10.0)).claimed
        assert primitives.put(key, "late", ttl=5.0, absent=True, token=late) is False
        assert primitives.get(key).value == "second"
        assert primitives.get(key, Claim(self.token(), _LONG_TTL, below=10.0)).claimed

    def test_a_put_without_the_token_keeps_the_claim(self, primitives: _Primitives) -> None:
        """A put without a token (or with another one) leaves the claim with its holder."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        primitives.put(key, "filled", ttl=5.0)
        primitives.put(key, "filled", ttl=5.0, token=self.token())
        assert not primitives.get(key, Claim(self.token(), _LONG_TTL, below=10.0)).claimed
        assert primitives.get(key, Claim(holder, _LONG_TTL, below=10.0)).claimed

    def test_release_frees_the_claim(self, primitives: _Primitives) -> None:
        """Releasing with the holder's token lets another token claim the key."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        primitives.release(key, holder)
        assert primitives.get(key, Claim(self.token(), _LONG_TTL)).claimed

    def test_release_with_another_token_does_nothing(self, primitives: _Primitives) -> None:
        """Releasing with a token that does not hold the claim leaves the claim held."""
        key, holder, other = self.key(), self.token(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        primitives.release(key, other)
        assert not primitives.get(key, Claim(other, _LONG_TTL)).claimed
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed

    def test_release_of_a_free_key_does_nothing(self, primitives: _Primitives) -> None:
        """Releasing a key nobody claimed is harmless and leaves the key free."""
        key = self.key()
        primitives.release(key, self.token())
        assert primitives.get(key, Claim(self.token(), _LONG_TTL)).claimed

    # waiting ---------------------------------------------------------------------------------

    def test_wait_returns_when_the_claim_is_released(self, primitives: _Primitives) -> None:
        """A waiter wakes soon after another thread or task releases, well before its timeout."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        join = primitives.soon(0.2, "release", key, holder)
        elapsed = primitives.wait_released(key, timeout=10.0)
        join()
        assert 0.15 <= elapsed < 0.2 + _SLACK

    def test_wait_returns_when_a_put_releases_the_claim(self, primitives: _Primitives) -> None:
        """A waiter wakes soon after the holder puts the value with its token."""
        key, holder = self.key(), self.token()
        assert primitives.get(key, Claim(holder, _LONG_TTL)).claimed
        join = primitives.soon(0.2, "put", key, "filled", ttl=_LONG_TTL, token=holder)
        elapsed = primitives.wait_released(key, timeout=10.0)
        join()
        assert 0.15 <= elapsed < 0.2 + _SLACK
        assert primitives.get(key).value == "filled"

    def test_wait_times_out_when_nobody_releases(self, primitives: _Primitives) -> None:
        """A waiter whose claim stays held returns after about its timeout."""
        key = self.key()
        assert primitives.get(key, Claim(self.token(), _LONG_TTL)).claimed
        elapsed = primitives.wait_released(key, timeout=0.4)
        assert 0.35 <= elapsed < 0.4 + _SLACK

    def test_wait_returns_when_the_claim_expires(self, primitives: _Primitives) -> None:
        """A waiter returns once the claim's ttl runs out, not only at its own timeout."""
        key = self.key()
        assert primitives.get(key, Claim(self.token(), _SHORT_TTL)).claimed
        elapsed = primitives.wait_released(key, timeout=10.0)
        assert elapsed < _SHORT_TTL + _SLACK

    def test_wait_returns_at_once_without_a_claim(self, primitives: _Primitives) -> None:
        """Waiting on a key nobody claimed returns at once."""
        key = self.key()
        primitives.put(key, "value", ttl=_LONG_TTL)
        assert primitives.wait_released(key, timeout=10.0) < 0.5
        assert primitives.wait_released(self.key(), timeout=10.0) < 0.5

    # deleting --------------------------------------------------------------------------------

    def test_delete_counts_the_values_it_deleted(self, primitives: _Primitives) -> None:
        """Delete removes the stored values and counts only keys that held one."""
        first, second, never = self.key(), self.key(), self.key()
        primitives.put(first, 1, ttl=_LONG_TTL)
        primitives.put(second, 2, ttl=_LONG_TTL)
        assert primitives.delete([first, second, never]) == 2
        assert primitives.get(first).value is None
        assert primitives.get(second).value is None
        assert primitives.delete([first]) == 0
        assert primitives.delete([]) == 0

    def test_purge_deletes_exactly_the_indexed_values(self, primitives: _Primitives) -> None:
        """Purge deletes every value put under the given indexes and no other value."""
        one, two, other = self.key("index"), self.key("index"), self.key("index")
        a, b, c, d, e = (self.key() for _ in range(5))
        primitives.put(a, "a", ttl=_LONG_TTL, indexes=[one])
        primitives.put(b, "b", ttl=_LONG_TTL, indexes=[one, two])
        primitives.put(c, "c", ttl=_LONG_TTL, indexes=[two])
        primitives.put(d, "d", ttl=_LONG_TTL, indexes=[other])
        primitives.put(e, "e", ttl=_LONG_TTL)
        assert primitives.purge([one, two]) == 3
        assert [primitives.get(key).value for key in (a, b, c, d, e)] == [
            None,
            None,
            None,
            "d",
            "e",
        ]
        assert primitives.purge([one, two]) == 0
        assert primitives.purge([]) == 0

    def test_purge_skips_values_deleted_since(self, primitives: _Primitives) -> None:
        """Purge counts only values still stored: one deleted meanwhile does not count."""
        index = self.key("index")
        kept, deleted = self.key(), self.key()
        primitives.put(kept, "kept", ttl=_LONG_TTL, indexes=[index])
        primitives.put(deleted, "deleted", ttl=_LONG_TTL, indexes=[index])
        assert primitives.delete([deleted]) == 1
        assert primitives.purge([index]) == 1
        assert primitives.get(kept).value is None

    def test_expired_values_leave_their_index(self, primitives: _Primitives) -> None:
        """Once its values expired, purging an index finds nothing to delete."""
        index = self.key("index")
        for _ in range(3):
            primitives.put(self.key(), "short", ttl=_SHORT_TTL, indexes=[index])
        _pause(_PAST_SHORT_TTL)
        assert primitives.purge([index]) == 0

    # versioned values (compare-and-set) -------------------------------------------------------

    def test_a_missing_versioned_key_reads_as_version_zero(self, primitives: _Primitives) -> None:
        """Nothing stored reads as no value at version 0."""
        read = primitives.get_versioned(self.key("versioned"))
        assert (read.value, read.version, read.stored) == (None, 0, False)

    def test_a_write_at_the_current_version_stores_the_next(self, primitives: _Primitives) -> None:
        """Writing at version 0, then 1, stores versions 1 and 2, each read back as written."""
        key = self.key("versioned")
        state = {"state": "open", "ring": b"\x00\x01", "probes": [[1, 2, 3.5]]}
        first = primitives.set_versioned(key, state, version=0, ttl=_LONG_TTL, writer="a" * 32)
        assert (first.value, first.version, first.stored) == (state, 1, True)
        assert primitives.get_versioned(key)[:2] == (state, 1)
        second = primitives.set_versioned(key, "next", version=1, ttl=_LONG_TTL, writer="b" * 32)
        assert second[:2] == ("next", 2)
        assert second.stored

    def test_a_write_at_a_stale_version_is_refused_with_what_is_stored(
        self, primitives: _Primitives
    ) -> None:
        """A writer that read an old version stores nothing and learns the current value."""
        key = self.key("versioned")
        primitives.set_versioned(key, "first", version=0, ttl=_LONG_TTL, writer=self.token())
        primitives.set_versioned(key, "second", version=1, ttl=_LONG_TTL, writer=self.token())
        late = primitives.set_versioned(key, "late", version=1, ttl=_LONG_TTL, writer=self.token())
        assert (late.value, late.version, late.stored) == ("second", 2, False)
        assert primitives.get_versioned(key)[:2] == ("second", 2)

    def test_a_write_sent_twice_reports_stored_and_stores_once(
        self, primitives: _Primitives
    ) -> None:
        """The same writer's write, repeated (a reply lost, the command re-sent), is one write."""
        key, writer = self.key("versioned"), self.token()
        primitives.set_versioned(key, "once", version=0, ttl=_LONG_TTL, writer=writer)
        again = primitives.set_versioned(key, "once", version=0, ttl=_LONG_TTL, writer=writer)
        assert (again.version, again.stored) == (1, True)
        assert primitives.get_versioned(key).version == 1

    def test_of_writers_racing_on_one_version_exactly_one_stores(
        self, primitives: _Primitives
    ) -> None:
        """Eight writers that all read version 1 write at once: one stores version 2."""
        key = self.key("versioned")
        primitives.set_versioned(key, "base", version=0, ttl=_LONG_TTL, writer=self.token())
        joins = [
            primitives.soon(
                0.05,
                "set_versioned",
                key,
                f"writer {number}",
                version=1,
                ttl=_LONG_TTL,
                writer=self.token(),
            )
            for number in range(8)
        ]
        for join in joins:
            join()
        read = primitives.get_versioned(key)
        assert read.version == 2
        assert isinstance(read.value, str)
        assert read.value.startswith("writer ")

    def test_the_store_time_moves_forward(self, primitives: _Primitives) -> None:
        """Readings of the store's time never go back, and show time passing."""
        key = self.key("versioned")
        first = primitives.get_versioned(key).time
        _pause(0.05)
        second = primitives.set_versioned(key, 1, version=0, ttl=_LONG_TTL, writer=self.token())
        assert 0.03 <= second.time - first < _HANG

    # rate limits ------------------------------------------------------------------------------

    def test_a_rate_limit_admits_its_burst_then_refuses_with_the_time_to_wait(
        self, primitives: _Primitives
    ) -> None:
        """A quiet key admits *burst* calls at once; the next learns when a token is free."""
        key = self.key("rate")
        decisions = [primitives.throttle(key, _LONG_TTL, 3) for _ in range(3)]
        assert decisions == [(True, 0.0)] * 3
        refused = primitives.throttle(key, _LONG_TTL, 3)
        assert not refused.admitted
        assert _LONG_TTL - _SLACK <= refused.wait <= _LONG_TTL
        assert primitives.throttle(self.key("rate"), _LONG_TTL, 3) == (True, 0.0)  # its own key

    def test_a_refused_call_takes_no_token(self, primitives: _Primitives) -> None:
        """Refusals spend nothing: once the interval has passed, the next call is admitted."""
        key = self.key("rate")
        assert primitives.throttle(key, _SHORT_TTL, 1).admitted
        for _ in range(5):
            assert not primitives.throttle(key, _SHORT_TTL, 1).admitted
        _pause(_PAST_SHORT_TTL)
        assert primitives.throttle(key, _SHORT_TTL, 1) == (True, 0.0)

    def test_a_call_may_reserve_a_token_within_max_wait(self, primitives: _Primitives) -> None:
        """Within *max_wait*, a call is admitted with its wait; each next one waits longer."""
        key = self.key("rate")
        assert primitives.throttle(key, 10.0, 1, 25.0) == (True, 0.0)
        first = primitives.throttle(key, 10.0, 1, 25.0)
        second = primitives.throttle(key, 10.0, 1, 25.0)
        assert first.admitted
        assert second.admitted
        assert 10.0 - _SLACK <= first.wait <= 10.0
        assert 20.0 - _SLACK <= second.wait <= 20.0
        refused = primitives.throttle(key, 10.0, 1, 25.0)  # its token would come in 30 s
        assert not refused.admitted
        assert 30.0 - _SLACK <= refused.wait <= 30.0

    def test_a_rate_limit_refills_to_its_burst_and_no_more(self, primitives: _Primitives) -> None:
        """After a quiet spell a key admits its burst again, however long the spell was."""
        key, interval = self.key("rate"), _SHORT_TTL / 2
        for _ in range(2):
            assert primitives.throttle(key, interval, 2).admitted
        _pause(_PAST_SHORT_TTL)
        decisions = [primitives.throttle(key, interval, 2).admitted for _ in range(3)]
        assert decisions == [True, True, False]

    def test_a_limit_of_millions_a_second_admits(self, primitives: _Primitives) -> None:
        """An interval far below the store's clock resolution still admits its burst."""
        key = self.key("rate")
        decisions = [primitives.throttle(key, 1e-9, 1_000_000_000) for _ in range(3)]
        assert decisions == [(True, 0.0)] * 3

    def test_racing_calls_are_admitted_exactly_burst_times(self, primitives: _Primitives) -> None:
        """Forty calls at once on a key with a burst of 25 (and no refill): 25 are admitted."""
        key = self.key("rate")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(primitives.throttle, key, _LONG_TTL, 25) for _ in range(40)]
            admitted = sum(future.result(timeout=_HANG).admitted for future in futures)
        assert admitted == 25

    # locks ------------------------------------------------------------------------------------

    def test_a_free_lock_is_taken_and_taking_it_again_finds_the_same_token(
        self, primitives: _Primitives
    ) -> None:
        """The first owner gets a token; the same request again is told it holds that token."""
        key, owner = self.key("lock"), self.token()
        first = primitives.lock(key, owner, _LONG_TTL)
        assert first.token is not None
        assert 0 < first.ttl <= _LONG_TTL
        again = primitives.lock(key, owner, _LONG_TTL)
        assert again.token == first.token

    def test_a_held_lock_refuses_another_owner_with_the_time_it_has_left(
        self, primitives: _Primitives
    ) -> None:
        """Another owner gets no token, and learns how long the holder's lease has left.

        A backend that names the holding (``holder``) names it by the holder's token.
        """
        key = self.key("lock")
        held = primitives.lock(key, self.token(), 5.0)
        refused = primitives.lock(key, self.token(), _LONG_TTL)
        assert refused.token is None
        assert 0 < refused.ttl <= 5.0
        assert refused.holder in {None, held.token}

    def test_fencing_tokens_increase_with_every_holder(self, primitives: _Primitives) -> None:
        """Each lease taken gets a token greater than every one before it."""
        key = self.key("lock")
        tokens = []
        for _ in range(5):
            owner = self.token()
            locked = primitives.lock(key, owner, _LONG_TTL)
            assert locked.token is not None
            tokens.append(locked.token)
            assert primitives.unlock(key, owner)
        assert tokens == sorted(set(tokens))

    def test_only_the_owner_releases_or_extends_a_lock(self, primitives: _Primitives) -> None:
        """Another owner's unlock and extend do nothing; the holder's work."""
        key, owner, other = self.key("lock"), self.token(), self.token()
        primitives.lock(key, owner, _SHORT_TTL)
        assert not primitives.unlock(key, other)
        assert not primitives.extend(key, other, _LONG_TTL)
        assert primitives.lock(key, other, _LONG_TTL).token is None
        assert primitives.extend(key, owner, _LONG_TTL)
        _pause(_PAST_SHORT_TTL)
        assert primitives.lock(key, other, _LONG_TTL).token is None  # extended: still held
        assert primitives.unlock(key, owner)
        assert not primitives.unlock(key, owner)
        assert primitives.lock(key, other, _LONG_TTL).token is not None

    def test_an_expired_lease_cannot_be_extended_and_goes_to_the_next_owner(
        self, primitives: _Primitives
    ) -> None:
        """After its ttl a lease is gone: extending fails, and the next owner's token is greater."""
        key, owner, other = self.key("lock"), self.token(), self.token()
        first = primitives.lock(key, owner, _SHORT_TTL)
        _pause(_PAST_SHORT_TTL)
        assert not primitives.extend(key, owner, _LONG_TTL)
        second = primitives.lock(key, other, _LONG_TTL)
        assert second.token is not None
        assert first.token is not None
        assert second.token > first.token
        assert not primitives.unlock(key, owner)

    def test_a_waiter_is_woken_when_the_lock_is_released(self, primitives: _Primitives) -> None:
        """wait_released on a held lock returns soon after its owner unlocks it."""
        key, owner = self.key("lock"), self.token()
        primitives.lock(key, owner, _LONG_TTL)
        join = primitives.soon(0.2, "unlock", key, owner)
        waited = primitives.wait_released(key, 5.0)
        join()
        assert 0.1 <= waited < 2.0

    # slots (counting semaphores with leases) -------------------------------------------------

    def test_slots_admit_up_to_their_limit_and_a_holder_again(
        self, primitives: _Primitives
    ) -> None:
        """Two of two slots taken: a third owner is refused; a holder asking again is admitted."""
        key, first, second = self.key("slots"), self.token(), self.token()
        assert primitives.acquire_slot(key, first, 2, _LONG_TTL)
        assert primitives.acquire_slot(key, second, 2, _LONG_TTL)
        assert not primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)
        assert primitives.acquire_slot(key, first, 2, _LONG_TTL)  # the same request, sent twice
        assert not primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)  # still one slot
        assert primitives.acquire_slot(self.key("slots"), self.token(), 2, _LONG_TTL)  # its own

    def test_a_released_slot_admits_the_next_owner(self, primitives: _Primitives) -> None:
        """Only its holder gives a slot back, once; the slot then admits another owner."""
        key, holder, other = self.key("slots"), self.token(), self.token()
        assert primitives.acquire_slot(key, holder, 1, _LONG_TTL)
        assert not primitives.release_slot(key, other)
        assert not primitives.acquire_slot(key, other, 1, _LONG_TTL)
        assert primitives.release_slot(key, holder)
        assert not primitives.release_slot(key, holder)
        assert primitives.acquire_slot(key, other, 1, _LONG_TTL)

    def test_a_slot_runs_out_after_its_ttl_unless_extended(self, primitives: _Primitives) -> None:
        """An extended slot outlives its first ttl; one left alone frees its place after it."""
        key, kept, left = self.key("slots"), self.token(), self.token()
        assert primitives.acquire_slot(key, kept, 2, _SHORT_TTL)
        assert primitives.acquire_slot(key, left, 2, _SHORT_TTL)
        assert not primitives.extend_slot(key, self.token(), _LONG_TTL)
        assert primitives.extend_slot(key, kept, _LONG_TTL)
        _pause(_PAST_SHORT_TTL)
        assert not primitives.extend_slot(key, left, _LONG_TTL)
        assert primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)  # left's place
        assert not primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)  # kept holds on
        assert not primitives.release_slot(key, left)
        assert primitives.release_slot(key, kept)

    def test_a_slot_waiter_is_woken_by_a_release(self, primitives: _Primitives) -> None:
        """wait_slot on full slots returns soon after a holder gives one back."""
        key, holder = self.key("slots"), self.token()
        assert primitives.acquire_slot(key, holder, 1, _LONG_TTL)
        join = primitives.soon(0.2, "release_slot", key, holder)
        waited = primitives.wait_slot(key, 1, 10.0)
        join()
        assert 0.15 <= waited < 0.2 + _SLACK

    def test_a_slot_waiter_returns_when_the_first_lease_runs_out(
        self, primitives: _Primitives
    ) -> None:
        """A waiter on full slots returns once the first lease runs out, before its timeout."""
        key = self.key("slots")
        assert primitives.acquire_slot(key, self.token(), 2, _SHORT_TTL)
        assert primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)
        waited = primitives.wait_slot(key, 2, 10.0)
        assert waited < _SHORT_TTL + _SLACK
        assert primitives.acquire_slot(key, self.token(), 2, _LONG_TTL)

    def test_a_slot_waiter_times_out_or_returns_at_once(self, primitives: _Primitives) -> None:
        """Full slots held on keep a waiter for its timeout; a free slot lets it go at once."""
        key = self.key("slots")
        assert primitives.acquire_slot(key, self.token(), 1, _LONG_TTL)
        assert 0.35 <= primitives.wait_slot(key, 1, 0.4) < 0.4 + _SLACK
        assert primitives.wait_slot(key, 2, 10.0) < 0.5
        assert primitives.wait_slot(self.key("slots"), 1, 10.0) < 0.5

    def test_a_versioned_value_expires_after_its_ttl(self, primitives: _Primitives) -> None:
        """After its ttl a versioned key reads as nothing stored, and version 0 writes again."""
        key = self.key("versioned")
        primitives.set_versioned(key, "short", version=0, ttl=_SHORT_TTL, writer=self.token())
        _pause(_PAST_SHORT_TTL)
        assert primitives.get_versioned(key)[:2] == (None, 0)
        again = primitives.set_versioned(key, "new", version=0, ttl=_LONG_TTL, writer=self.token())
        assert again.stored


class InspectorContract(_Contract):
    """The checks of :class:`resilient.typing.Inspector`, for backends that implement it.

    Subclass it beside :class:`BackendContract`, with the same ``backend`` fixture. Each check
    runs through the sync methods (``scan``, ``peek``) and the async ones (``ascan``,
    ``apeek``).
    """

    def prefix(self) -> str:
        """Return a new prefix no other check uses."""
        return f"{self.key_prefix}:inspected:{uuid.uuid4().hex}:"

    def under(self, prefix: str) -> str:
        """Return a new key under *prefix*, with a hash tag of its own."""
        return f"{prefix}{{{uuid.uuid4().hex}}}"

    def test_a_scan_lists_each_key_holding_something_once(self, primitives: _Primitives) -> None:
        """A value, a claim, a lock, a versioned value and slots under the prefix: each once."""
        prefix = self.prefix()
        value, claimed, locked, versioned, slots = (self.under(prefix) for _ in range(5))
        primitives.put(value, "v", ttl=_LONG_TTL)
        primitives.get(claimed, Claim(self.token(), _LONG_TTL))
        primitives.lock(locked, self.token(), _LONG_TTL)
        primitives.set_versioned(versioned, "v", version=0, ttl=_LONG_TTL, writer=self.token())
        primitives.acquire_slot(slots, self.token(), 1, _LONG_TTL)
        primitives.put(self.under(self.prefix()), "elsewhere", ttl=_LONG_TTL)
        found = primitives.scan(prefix, 100)
        assert sorted(found) == sorted([value, claimed, locked, versioned, slots])

    def test_a_scan_returns_at_most_its_limit(self, primitives: _Primitives) -> None:
        """Of seven keys under the prefix, a scan limited to three returns three of them."""
        prefix = self.prefix()
        keys = [self.under(prefix) for _ in range(7)]
        for key in keys:
            primitives.put(key, 1, ttl=_LONG_TTL)
        found = primitives.scan(prefix, 3)
        assert len(found) == len(set(found)) == 3
        assert set(found) <= set(keys)

    def test_a_scan_of_an_empty_prefix_finds_nothing(self, primitives: _Primitives) -> None:
        """A prefix nothing was stored under lists no key."""
        assert primitives.scan(self.prefix(), 100) == []

    def test_a_scan_does_not_list_an_expired_value(self, primitives: _Primitives) -> None:
        """A value past its ttl is not listed."""
        prefix = self.prefix()
        primitives.put(self.under(prefix), "short", ttl=_SHORT_TTL)
        _pause(_PAST_SHORT_TTL)
        assert primitives.scan(prefix, 100) == []

    def test_a_peek_reads_a_value_and_its_ttl_in_order(self, primitives: _Primitives) -> None:
        """Each key's value and ttl, in the order asked; a missing key reads as nothing."""
        prefix = self.prefix()
        first, missing, second = (self.under(prefix) for _ in range(3))
        primitives.put(first, {"n": 1}, ttl=_LONG_TTL)
        primitives.put(second, [2, "two"], ttl=5.0)
        one, none, two = primitives.peek([first, missing, second])
        assert one.value == {"n": 1}
        assert one.ttl is not None
        assert 0 < one.ttl <= _LONG_TTL
        assert (none.value, none.ttl, none.held) == (None, None, None)
        assert two.value == [2, "two"]
        assert two.ttl is not None
        assert 0 < two.ttl <= 5.0
        assert one.held is None
        assert not one.rejected

    def test_a_peek_takes_no_claim(self, primitives: _Primitives) -> None:
        """After a peek at a missing key, the first claimant still takes its claim."""
        key = self.under(self.prefix())
        primitives.peek([key])
        assert primitives.get(key, Claim(self.token(), _LONG_TTL)).claimed

    def test_a_peek_names_the_holder_of_a_claim(self, primitives: _Primitives) -> None:
        """A claimed key reads with its holder's token and what its claim has left."""
        key, token = self.under(self.prefix()), self.token()
        primitives.get(key, Claim(token, 5.0))
        (peeked,) = primitives.peek([key])
        assert peeked.value is None
        assert peeked.held is not None
        assert peeked.held.token == token
        assert 0 < peeked.held.ttl <= 5.0
        assert peeked.held.fence is None

    def test_a_peek_names_a_locks_owner_and_fencing_token(self, primitives: _Primitives) -> None:
        """A held lock reads with its owner and its lease's fencing token; released, nothing."""
        key, owner = self.under(self.prefix()), self.token()
        locked = primitives.lock(key, owner, 5.0)
        (peeked,) = primitives.peek([key])
        assert peeked.held is not None
        assert (peeked.held.token, peeked.held.fence) == (owner, locked.token)
        assert 0 < peeked.held.ttl <= 5.0
        assert primitives.unlock(key, owner)
        assert primitives.peek([key])[0].held is None


class ExtenderContract(_Contract):
    """The checks of :class:`resilient.typing.Extender`, for backends that implement it.

    Subclass it beside :class:`BackendContract`, with the same ``backend`` fixture. Each check
    runs through ``extend_many`` and ``aextend_many``.
    """

    def lock_key(self) -> str:
        """Return a new lock key, with a hash tag of its own."""
        return f"{self.key_prefix}:extended:{{{uuid.uuid4().hex}}}"

    def test_each_lease_is_answered_in_order_as_extend_would(self, primitives: _Primitives) -> None:
        """Each lease's outcome, in order: what extend would answer, and do, for it.

        Held by its owner: True, and it outlasts its old ttl. Held by another owner, run out
        or never taken: False, and nothing changes for it.
        """
        ran_out, held, others, missing = (self.lock_key() for _ in range(4))
        owner, other = self.token(), self.token()
        primitives.lock(ran_out, owner, _SHORT_TTL)
        _pause(_PAST_SHORT_TTL)
        primitives.lock(held, owner, _SHORT_TTL)
        primitives.lock(others, other, _SHORT_TTL)
        leases = [(key, owner, _LONG_TTL) for key in (ran_out, held, others, missing)]
        assert primitives.extend_many(leases) == [False, True, False, False]
        _pause(_PAST_SHORT_TTL)
        assert primitives.lock(held, other, _LONG_TTL).token is None  # extended: still held
        for key in (ran_out, others, missing):
            assert primitives.lock(key, self.token(), _LONG_TTL).token is not None

    def test_leases_of_many_keys_are_all_extended(self, primitives: _Primitives) -> None:
        """Fifty leases, each under a hash tag of its own (a sharded store's every shard).

        Each is extended to a short ttl, so that each one running out then shows it was.
        """
        owner = self.token()
        keys = [self.lock_key() for _ in range(50)]
        for key in keys:
            primitives.lock(key, owner, _LONG_TTL)
        assert primitives.extend_many([(key, owner, _SHORT_TTL) for key in keys]) == [True] * 50
        _pause(_PAST_SHORT_TTL)
        for key in keys:
            assert primitives.lock(key, self.token(), _LONG_TTL).token is not None

    def test_no_leases_extend_nothing(self, primitives: _Primitives) -> None:
        """An empty list is answered with an empty list."""
        assert primitives.extend_many([]) == []


class _Heard:
    """A listener recording what it hears, which a check can wait on."""

    def __init__(self) -> None:
        self.messages: list[str | None] = []
        self._changed = threading.Condition()

    def __call__(self, message: str | None) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait_for(self, message: str) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: message in self.messages, _HANG)


def _until_live(subscription: Any) -> None:
    deadline = time.monotonic() + _HANG
    while not subscription.live:
        assert time.monotonic() < deadline, f"{subscription!r} never became live"
        _pause(0.005)


class BroadcasterContract:
    """The checks of :class:`resilient.typing.Broadcaster`, for backends that implement it.

    Subclass it beside :class:`BackendContract`, with the same ``backend`` fixture. Each
    check publishes through the sync and the async method (``publish`` and ``apublish``).
    """

    @pytest.fixture(params=["sync", "async"])
    def publish(
        self, request: pytest.FixtureRequest, backend: Any
    ) -> Iterator[Callable[..., None]]:
        """Publish through the backend, the sync or the async way."""
        if request.param == "sync":
            yield backend.publish
        else:
            with _LoopThread() as loop:
                yield lambda channel, message: loop.submit(
                    backend.apublish(channel, message)
                ).result(timeout=_HANG)

    def channel(self) -> str:
        """Return a channel no other check uses."""
        return f"contract:channel:{uuid.uuid4().hex}"

    def test_a_subscription_hears_none_before_it_is_live(
        self, backend: Any, publish: Callable[..., None]
    ) -> None:
        """A new subscription becomes live, and its listener heard None first."""
        heard = _Heard()
        subscription = backend.subscribe(self.channel(), heard)
        try:
            _until_live(subscription)
            assert heard.messages[:1] == [None]
        finally:
            subscription.close()

    def test_a_message_reaches_every_live_subscription_of_its_channel(
        self, backend: Any, publish: Callable[..., None]
    ) -> None:
        """Each listener of the channel hears the message; one of another channel does not."""
        channel = self.channel()
        first, second, elsewhere = _Heard(), _Heard(), _Heard()
        subscriptions = [
            backend.subscribe(channel, first),
            backend.subscribe(channel, second),
            backend.subscribe(self.channel(), elsewhere),
        ]
        try:
            for subscription in subscriptions:
                _until_live(subscription)
            publish(channel, "a:b:{c} d:e")
            assert first.wait_for("a:b:{c} d:e")
            assert second.wait_for("a:b:{c} d:e")
            publish(subscriptions[2].channel, "marker")
            assert elsewhere.wait_for("marker")
            assert "a:b:{c} d:e" not in elsewhere.messages
        finally:
            for subscription in subscriptions:
                subscription.close()

    def test_a_closed_subscription_is_not_live_and_hears_nothing(
        self, backend: Any, publish: Callable[..., None]
    ) -> None:
        """After close(), a subscription is not live and its listener hears no message."""
        channel = self.channel()
        closed, open_ = _Heard(), _Heard()
        closing = backend.subscribe(channel, closed)
        staying = backend.subscribe(channel, open_)
        try:
            _until_live(closing)
            _until_live(staying)
            closing.close()
            assert not closing.live
            publish(channel, "after")
            assert open_.wait_for("after")
            assert "after" not in closed.messages
            closing.close()  # a second close does nothing
        finally:
            staying.close()
