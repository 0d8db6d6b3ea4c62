"""The in-process backend: :class:`MemoryBackend`, the default."""

# The in-process backend: bounded LRU maps with per-entry expiry, claims and indexes.
#
# Rules:
# - Values are stored as they are (no copy, no encoding); a caller gets the very object stored.
# - Every mutation holds the store's lock. Reads on the cache's hit path go lock-free through
#   `LruStore.data` (a dict read and `move_to_end` are each atomic under the GIL); an entry
#   found expired is left for a locked operation to remove.
# - Time is the configured clock's monotonic time, so `FakeClock` drives expiry in tests.
# - Versioned values (compare-and-set) live in a region of their own, as (value, version,
#   writer); the backend's lock makes each read-compare-write one step.
# - The async methods are the sync ones (nothing here blocks on I/O) except the wait, which
#   waits on the claim's `Signal` in the caller's own event loop: no thread hop either way.
#
# Why not cachetools: its caches answer a hit through two or three Python-level method calls
# (Cache.__getitem__, LRUCache.__getitem__, the order update), which alone costs more than the
# cache's whole hit budget, are not thread-safe, and keep one TTL per cache where the cache
# needs one per entry (see docs/design.md).
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from threading import Lock
from typing import cast

import attrs

from .. import _config
from .._core.ratelimit import ADMITTED, Throttled, throttle
from .._signal import Signal
from ._types import MISS, NOTHING, Claim, Fetched, Held, Locked, Peeked, Versioned

__all__ = ["LruStore", "MemoryBackend"]


# The configured clock's monotonic time, bound on first use and again whenever the defaults
# change: the rate limits' hot path reads it without walking `_config.DEFAULTS.clock` (this
# module is imported while `_config` makes its defaults, so not bound at import).
def _bind_clock() -> None:
    global _monotonic  # noqa: PLW0603 - the one binding, kept current
    _monotonic = _config.DEFAULTS.clock.monotonic


def _first_reading() -> float:
    _bind_clock()
    return _monotonic()


_monotonic: Callable[[], float] = _first_reading
_config.on_change(_bind_clock)


@attrs.define(slots=True)
class _Held:
    token: str
    expires_at: float
    released: Signal = attrs.field(factory=Signal)
    fence: int | None = None  # a lock's fencing token; None for a cache claim


class _Semaphores:
    """Counting semaphores whose places are leases: per key, when each holder's runs out.

    A key is kept only while someone holds a place. Each key has a Signal that a release
    fires (and replaces), which waiters wait on, up to when the first lease runs out.
    """

    __slots__ = ("_held", "_lock")

    def __init__(self) -> None:
        self._lock = Lock()
        self._held: dict[str, tuple[dict[str, float], Signal]] = {}

    def _holders(self, key: str, now: float) -> tuple[dict[str, float], Signal] | None:
        """The live holders of *key* and its release signal, with run-out leases dropped."""
        entry = self._held.get(key)
        if entry is not None:
            holders = entry[0]
            for owner in [owner for owner, until in holders.items() if until <= now]:
                del holders[owner]
            if not holders:
                del self._held[key]
                return None
        return entry

    def acquire(self, key: str, owner: str, limit: int, ttl: float, now: float) -> bool:
        """Give *owner* a place of *key* for *ttl* seconds, if it holds one or one is free."""
        with self._lock:
            entry = self._holders(key, now)
            if entry is None:
                entry = self._held[key] = ({}, Signal())
            holders = entry[0]
            if owner not in holders and len(holders) >= limit:
                return False
            holders[owner] = now + ttl
            return True

    def release(self, key: str, owner: str, now: float) -> bool:
        """Take *owner*'s place of *key* back and wake the waiters; False if it held none."""
        with self._lock:
            entry = self._holders(key, now)
            if entry is None or entry[0].pop(owner, None) is None:
                return False
            holders, released = entry
            if holders:
                self._held[key] = (holders, Signal())
            else:
                del self._held[key]
        released.fire()
        return True

    def extend(self, key: str, owner: str, ttl: float, now: float) -> bool:
        """Make *owner*'s live place of *key* last *ttl* seconds from *now*."""
        with self._lock:
            entry = self._holders(key, now)
            if entry is None or owner not in entry[0]:
                return False
            entry[0][owner] = now + ttl
            return True

    def keys(self, prefix: str, now: float) -> list[str]:
        """Return the keys starting with *prefix* of which a place is held at *now*."""
        with self._lock:
            return [
                key
                for key in list(self._held)
                if key.startswith(prefix) and self._holders(key, now)
            ]

    def full(self, key: str, limit: int, now: float) -> tuple[Signal, float] | None:
        """None if fewer than *limit* places of *key* are held; else what a waiter waits on.

        That is the signal the next release fires, and the seconds until the first lease
        runs out.
        """
        with self._lock:
            entry = self._holders(key, now)
            if entry is None or len(entry[0]) < limit:
                return None
            return entry[1], min(entry[0].values()) - now


class LruStore:
    """One bounded map of expiring values, least recently used evicted first; thread-safe.

    ``data`` maps a key to ``(value, expires_at)``, with *expires_at* on the configured
    clock's monotonic scale. Keys are any hashable values.
    """

    __slots__ = ("_claims", "_fence", "_index_limit", "_indexes", "_lock", "data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, not {maxsize!r}")
        self.maxsize = maxsize
        self.data: OrderedDict[Hashable, tuple[object, float]] = OrderedDict()
        self._lock = Lock()
        self._claims: dict[Hashable, _Held] = {}
        # The last fencing token handed out, for every lock of the store: one counter keeps
        # each lock's tokens increasing without remembering a lock once it is released.
        self._fence = 0
        self._indexes: dict[str, dict[Hashable, float]] = {}
        self._index_limit = 4 * maxsize

    def get(self, key: Hashable, claim: Claim | None, now: float) -> Fetched:
        """Read *key* at *now*; with *claim*, take the claim if it is free and due."""
        with self._lock:
            entry = self.data.get(key)
            if entry is not None and entry[1] <= now:
                del self.data[key]
                entry = None
            if entry is not None:
                self.data.move_to_end(key)
            ttl = None if entry is None else entry[1] - now
            if claim is None:
                return MISS if entry is None else Fetched(entry[0], ttl, claimed=False)
            value = None if entry is None else entry[0]
            if ttl is None or ttl <= claim.below:
                held = self._claims.get(key)
                if held is None or held.expires_at <= now:
                    if held is not None:
                        held.released.fire()
                    self._claims[key] = _Held(claim.token, now + claim.ttl)
                elif held.token == claim.token:
                    held.expires_at = now + claim.ttl
                else:
                    return Fetched(value, ttl, claimed=False, holder=held.token)
                return Fetched(value, ttl, claimed=True)
            return Fetched(value, ttl, claimed=False)

    def put(
        self,
        key: Hashable,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str],
        token: str | None,
        now: float,
        absent: bool = False,
    ) -> bool:
        """Store *value* for *ttl* seconds, index it, and release *token*'s claim on it.

        With *absent*, store it only if no value is stored; return whether it was stored.
        """
        if value is None:
            raise ValueError("a backend stores no None values: None means absent")
        expires_at = now + ttl
        with self._lock:
            if absent and (entry := self.data.get(key)) is not None and entry[1] > now:
                if token is not None:
                    self._release(key, token)
                return False
            self.data[key] = (value, expires_at)
            self.data.move_to_end(key)
            while len(self.data) > self.maxsize:
                self.data.popitem(last=False)
            for name in indexes:
                index = self._indexes.setdefault(name, {})
                index[key] = expires_at
                if len(index) > 2 * self.maxsize:
                    self._prune(index, now)
            if len(self._indexes) > self._index_limit:
                self._prune_indexes(now)
            if token is not None:
                self._release(key, token)
            return True

    def release(self, key: Hashable, token: str) -> None:
        """Drop the claim *token* holds on *key*, if it does, and wake its waiters."""
        with self._lock:
            self._release(key, token)

    def lock(self, key: Hashable, owner: str, ttl: float, now: float) -> Locked:
        """Take the claim of *key* as a lock for *owner*, with a fencing token."""
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held.expires_at > now:
                if held.token == owner:
                    return Locked(held.fence, held.expires_at - now)
                return Locked(None, held.expires_at - now, held.fence)
            if held is not None:
                held.released.fire()
            self._fence += 1
            self._claims[key] = _Held(owner, now + ttl, fence=self._fence)
            return Locked(self._fence, ttl)

    def extend(self, key: Hashable, owner: str, ttl: float, now: float) -> bool:
        """Make *owner*'s live claim on *key* last *ttl* more seconds."""
        with self._lock:
            return self._extend(key, owner, ttl, now)

    def extend_many(
        self, leases: Sequence[tuple[Hashable, str, float]], now: float
    ) -> list[bool | Exception]:
        """Extend each ``(key, owner, ttl)`` of *leases* (see :meth:`extend`), in one step."""
        with self._lock:
            return [self._extend(key, owner, ttl, now) for key, owner, ttl in leases]

    def _extend(self, key: Hashable, owner: str, ttl: float, now: float) -> bool:
        held = self._claims.get(key)
        if held is None or held.token != owner or held.expires_at <= now:
            return False
        held.expires_at = now + ttl
        return True

    def unlock(self, key: Hashable, owner: str, now: float) -> bool:
        """Release *owner*'s live claim on *key*; say whether it held one."""
        with self._lock:
            held = self._claims.get(key)
            live = held is not None and held.token == owner and held.expires_at > now
            self._release(key, owner)
            return live

    def held(self, key: Hashable, now: float) -> tuple[Signal, float] | None:
        """Return the live claim on *key*: the signal its release fires, and its seconds left."""
        with self._lock:
            held = self._claims.get(key)
            if held is None or held.expires_at <= now:
                return None
            return held.released, held.expires_at - now

    def peek(self, key: Hashable, now: float) -> Peeked:
        """Return what *key* holds at *now*, changing nothing (its recency included)."""
        with self._lock:
            entry = self.data.get(key)
            held = self._claims.get(key)
            if held is not None and held.expires_at > now:
                claim = Held(held.token, held.expires_at - now, held.fence)
            else:
                claim = None
        if entry is None or entry[1] <= now:
            return NOTHING if claim is None else Peeked(None, None, claim)
        return Peeked(entry[0], entry[1] - now, claim)

    def keys(self, prefix: str, now: float) -> list[str]:
        """Return the keys starting with *prefix* that hold a live value or claim at *now*."""
        with self._lock:
            values = [
                key
                for key, (_, expires_at) in self.data.items()
                if isinstance(key, str) and key.startswith(prefix) and expires_at > now
            ]
            claims = [
                key
                for key, held in self._claims.items()
                if isinstance(key, str) and key.startswith(prefix) and held.expires_at > now
            ]
        return values + claims

    def delete(self, keys: Sequence[Hashable], now: float) -> int:
        """Delete the live values at *keys*; return how many there were."""
        deleted = 0
        with self._lock:
            for key in keys:
                entry = self.data.pop(key, None)
                if entry is not None and entry[1] > now:
                    deleted += 1
        return deleted

    def purge(self, indexes: Sequence[str], now: float) -> int:
        """Delete every live value recorded under *indexes*, and the indexes."""
        with self._lock:
            keys: set[Hashable] = set()
            for name in indexes:
                keys.update(self._indexes.pop(name, {}))
            deleted = 0
            for key in keys:
                entry = self.data.pop(key, None)
                if entry is not None and entry[1] > now:
                    deleted += 1
        return deleted

    def clear(self) -> None:
        """Drop every value and index (claims stay with their holders)."""
        with self._lock:
            self.data.clear()
            self._indexes.clear()

    def _release(self, key: Hashable, token: str) -> None:
        held = self._claims.get(key)
        if held is not None and held.token == token:
            del self._claims[key]
            held.released.fire()

    def _prune(self, index: dict[Hashable, float], now: float) -> None:
        for key in [key for key, expires_at in index.items() if expires_at <= now]:
            del index[key]

    def _prune_indexes(self, now: float) -> None:
        # Per-call tags ("user:{user_id}") make an index per value: drop the members that
        # expired or were evicted, and the indexes left empty, so that the indexes stay as
        # many as the values alive. The next prune waits until they have doubled again.
        data = self.data
        for name, index in list(self._indexes.items()):
            for key in [key for key in index if key not in data or data[key][1] <= now]:
                del index[key]
            if not index:
                del self._indexes[name]
        self._index_limit = max(4 * self.maxsize, 2 * len(self._indexes))


class MemoryBackend:
    """Keep state in this process: the default backend, nothing to install or run.

    Values are stored as they are, never copied or encoded, so a cached list is the same list
    on every hit: do not mutate what you get. Thread-safe, and usable from sync and async code
    (async callers never hop to a thread). State is not shared with other processes; use
    :class:`resilient.backends.RedisBackend` for that.

    Args:
        maxsize: How many values the backend keeps before evicting the least recently used.
            Each ``@cached`` function keeps its own region, bounded by its own ``maxsize``.
        name: The name events report for this backend.
    """

    def __init__(self, maxsize: int = 10_000, *, name: str = "memory") -> None:
        self.name = name
        self._store = LruStore(maxsize)
        self._versioned = LruStore(maxsize)
        self._regions: dict[str, LruStore] = {}
        self._lock = Lock()
        self._semaphores = _Semaphores()  # the slots of shared bulkheads
        # rate limits: each key's theoretical arrival time (see resilient/_core/ratelimit.py);
        # a key whose time has passed holds a full bucket, the same as no entry, so entries
        # past it are dropped when the map outgrows `_rates_bound` (never a live one)
        self._rates: dict[str, float] = {}
        self._rates_lock = Lock()
        self._rates_bound = maxsize

    def __repr__(self) -> str:
        return f"MemoryBackend(maxsize={self._store.maxsize!r}, name={self.name!r})"

    def _region(self, name: str, maxsize: int) -> LruStore:
        """Return the store of the region *name*, created with *maxsize* on first use."""
        store = self._regions.get(name)
        if store is None:
            with self._lock:
                store = self._regions.setdefault(name, LruStore(maxsize))
        return store

    def _stores(self) -> list[LruStore]:
        with self._lock:
            return [self._store, *self._regions.values()]

    def get_versioned(self, key: str) -> Versioned:
        """Read the versioned value at *key* (see :class:`resilient.typing.Backend`)."""
        now = _config.DEFAULTS.clock.monotonic()
        with self._lock:
            return self._read_versioned(key, now)[0]

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Store *value* as the next version if *version* is current (a compare-and-set)."""
        if value is None:
            raise ValueError("a backend stores no None values: None means absent")
        now = _config.DEFAULTS.clock.monotonic()
        with self._lock:
            current, stored_by = self._read_versioned(key, now)
            if current.version == version:
                record = (value, version + 1, writer)
                self._versioned.put(key, record, ttl=ttl, indexes=(), token=None, now=now)
                return Versioned(value, version + 1, now, stored=True)
            if current.version == version + 1 and stored_by == writer:
                return current._replace(stored=True)  # this very write, sent twice
            return current

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take the lock *key* for *owner* (see :class:`resilient.typing.Backend`)."""
        return self._store.lock(key, owner, ttl, _config.DEFAULTS.clock.monotonic())

    def unlock(self, key: str, owner: str) -> bool:
        """Release *owner*'s lock on *key* and wake its waiters."""
        return self._store.unlock(key, owner, _config.DEFAULTS.clock.monotonic())

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s lock on *key* last *ttl* seconds from now."""
        return self._store.extend(key, owner, ttl, _config.DEFAULTS.clock.monotonic())

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        """Extend each ``(key, owner, ttl)`` lock of *leases*, in one pass under the lock.

        See :class:`resilient.typing.Extender`.
        """
        return self._store.extend_many(leases, _config.DEFAULTS.clock.monotonic())

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take a slot of *key* for *owner* (see :class:`~resilient.typing.Backend`)."""
        now = _config.DEFAULTS.clock.monotonic()
        return self._semaphores.acquire(key, owner, limit, ttl, now)

    def release_slot(self, key: str, owner: str) -> bool:
        """Give back *owner*'s slot of *key* and wake its waiters."""
        return self._semaphores.release(key, owner, _config.DEFAULTS.clock.monotonic())

    def extend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s slot of *key* last *ttl* seconds from now."""
        return self._semaphores.extend(key, owner, ttl, _config.DEFAULTS.clock.monotonic())

    def wait_slot(self, key: str, limit: int, timeout: float) -> None:
        """Block until fewer than *limit* slots of *key* are held, or *timeout* seconds pass."""
        full = self._semaphores.full(key, limit, _config.DEFAULTS.clock.monotonic())
        if full is not None:
            full[0].wait(min(timeout, full[1]))

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Throttled:
        """Decide one call of the rate limit *key* (see :class:`resilient.typing.Backend`)."""
        rates, lock = self._rates, self._rates_lock
        lock.acquire()  # not `with`: this is the hot path of every in-process rate limit
        try:
            now = _monotonic()
            tat = rates.get(key)
            if tat is None:  # a key not seen lately: its bucket is full
                if len(rates) >= self._rates_bound:
                    self._forget_full_buckets(now)
                tat = now
            if tat <= now:  # a full bucket: the core's decision is "go", one interval spent
                rates[key] = now + interval
                return ADMITTED
            decision, rates[key] = throttle(tat, now, interval, burst, max_wait)
        finally:
            lock.release()
        return decision

    def _forget_full_buckets(self, now: float) -> None:
        """Drop the rate limits whose buckets are full again; raise the bound if none were."""
        rates = self._rates
        for key in [key for key, tat in rates.items() if tat <= now]:
            del rates[key]
        self._rates_bound = max(self._rates_bound, 2 * len(rates))

    def _read_versioned(self, key: str, now: float) -> tuple[Versioned, str | None]:
        """Return what is stored at *key*, and the writer that stored it."""
        record = self._versioned.get(key, None, now).value
        if record is None:
            return Versioned(None, 0, now), None
        value, version, writer = cast("tuple[object, int, str]", record)  # set_versioned's
        return Versioned(value, version, now), writer

    def get(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key*, taking its claim if asked and due (see :class:`resilient.typing.Backend`)."""
        return self._store.get(key, claim, _config.DEFAULTS.clock.monotonic())

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
        """Store *value* for *ttl* seconds, index it, and release *token*'s claim.

        With *absent*, only if no value is stored; return whether it was stored.
        """
        return self._store.put(
            key,
            value,
            ttl=ttl,
            indexes=indexes,
            token=token,
            now=_config.DEFAULTS.clock.monotonic(),
            absent=absent,
        )

    def release(self, key: str, token: str) -> None:
        """Release the claim *token* holds on *key* and wake its waiters."""
        self._store.release(key, token)

    def wait_released(self, key: str, timeout: float) -> None:
        """Block until no claim is held on *key*, or *timeout* seconds pass."""
        held = self._store.held(key, _config.DEFAULTS.clock.monotonic())
        if held is not None:
            held[0].wait(min(timeout, held[1]))

    def delete(self, keys: Sequence[str]) -> int:
        """Delete the values at *keys*; return how many were alive."""
        return self._store.delete(keys, _config.DEFAULTS.clock.monotonic())

    def purge(self, indexes: Sequence[str]) -> int:
        """Delete every value recorded under *indexes*, in every region; return how many."""
        now = _config.DEFAULTS.clock.monotonic()
        return sum(store.purge(indexes, now) for store in self._stores())

    def scan(self, prefix: str, limit: int) -> list[str]:
        """Return up to *limit* keys under *prefix* that hold something.

        See :class:`resilient.typing.Inspector`: values, versioned values, claims and locks,
        and slots; never the regions of ``@cached`` functions, whose keys are their calls'
        arguments.
        """
        now = _config.DEFAULTS.clock.monotonic()
        found = dict.fromkeys(
            [
                *self._store.keys(prefix, now),
                *self._versioned.keys(prefix, now),
                *self._semaphores.keys(prefix, now),
            ]
        )
        return list(found)[: max(0, limit)]

    def peek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds, changing nothing: claims untaken, recency untouched."""
        now = _config.DEFAULTS.clock.monotonic()
        return [self._store.peek(key, now) for key in keys]

    async def ascan(self, prefix: str, limit: int) -> list[str]:
        """Return keys under *prefix* (see :meth:`scan`)."""
        return self.scan(prefix, limit)

    async def apeek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds (see :meth:`peek`)."""
        return self.peek(keys)

    async def aget(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key* (see :meth:`get`)."""
        return self.get(key, claim=claim)

    async def aput(
        self,
        key: str,
        value: object,
        *,
        ttl: float,
        indexes: Sequence[str] = (),
        token: str | None = None,
        absent: bool = False,
    ) -> bool:
        """Store *value* (see :meth:`put`)."""
        return self.put(key, value, ttl=ttl, indexes=indexes, token=token, absent=absent)

    async def arelease(self, key: str, token: str) -> None:
        """Release a claim (see :meth:`release`)."""
        self.release(key, token)

    async def await_released(self, key: str, timeout: float) -> None:  # noqa: ASYNC109 - protocol
        """Wait in the running task until no claim is held on *key* (see :meth:`wait_released`)."""
        held = self._store.held(key, _config.DEFAULTS.clock.monotonic())
        if held is not None:
            await held[0].await_fired(min(timeout, held[1]))

    async def adelete(self, keys: Sequence[str]) -> int:
        """Delete values (see :meth:`delete`)."""
        return self.delete(keys)

    async def apurge(self, indexes: Sequence[str]) -> int:
        """Delete every value under *indexes* (see :meth:`purge`)."""
        return self.purge(indexes)

    async def alock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take a lock (see :meth:`lock`)."""
        return self.lock(key, owner, ttl)

    async def aunlock(self, key: str, owner: str) -> bool:
        """Release a lock (see :meth:`unlock`)."""
        return self.unlock(key, owner)

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a lock (see :meth:`extend`)."""
        return self.extend(key, owner, ttl)

    async def aextend_many(
        self, leases: Sequence[tuple[str, str, float]]
    ) -> list[bool | Exception]:
        """Extend locks (see :meth:`extend_many`)."""
        return self.extend_many(leases)

    async def aacquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take a slot (see :meth:`acquire_slot`)."""
        return self.acquire_slot(key, owner, limit, ttl)

    async def arelease_slot(self, key: str, owner: str) -> bool:
        """Give back a slot (see :meth:`release_slot`)."""
        return self.release_slot(key, owner)

    async def aextend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a slot (see :meth:`extend_slot`)."""
        return self.extend_slot(key, owner, ttl)

    async def await_slot(self, key: str, limit: int, timeout: float) -> None:  # noqa: ASYNC109 - protocol
        """Wait in the running task until a slot of *key* may be free (see :meth:`wait_slot`)."""
        full = self._semaphores.full(key, limit, _config.DEFAULTS.clock.monotonic())
        if full is not None:
            await full[0].await_fired(min(timeout, full[1]))

    async def athrottle(
        self, key: str, interval: float, burst: int, max_wait: float = 0.0
    ) -> Throttled:
        """Decide one call of a rate limit (see :meth:`throttle`)."""
        return self.throttle(key, interval, burst, max_wait)

    async def aget_versioned(self, key: str) -> Versioned:
        """Read a versioned value (see :meth:`get_versioned`)."""
        return self.get_versioned(key)

    async def aset_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Compare and set a versioned value (see :meth:`set_versioned`)."""
        return self.set_versioned(key, value, version=version, ttl=ttl, writer=writer)
