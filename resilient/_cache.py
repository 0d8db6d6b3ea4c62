# `@cached`: read-through caching on the memory backend or a shared one.
#
# Rules:
# - Memory hit path: the call's key is its argument tuple, read lock-free from the function's
#   region of the MemoryBackend; a fresh entry returns at once, before any generator or
#   event exists. Everything else (misses, stale and early entries, shared backends) runs as
#   one procedure of effects (see _drive.py), written once for sync and async callers.
# - Statistics (`Tallies`, for resilient.admin): every answer is counted, lock-free, except
#   that hits are counted only while asked for (`count_hits`, off by default): one more call
#   on the memory hit path is a tenth of its cost.
# - Stampedes: concurrent misses on one key in one process share one execution (_flight.py).
#   On a shared backend the leader's read also takes the key's claim (one round trip), so one
#   process in the cluster computes and the others wait until its put releases the claim
#   (woken by the backend, not polling), then read the value.
# - Every such wait, for a flight here or a claim elsewhere, stops at the caller's deadline
#   (`resilient.deadline`) with TimeoutError, as `@deduped` does. A leader whose deadline comes
#   while another process computes abandons its flight: its followers wait on, one leading,
#   and never inherit a deadline that was not theirs. The stored value is left alone.
# - Fail open: a backend error never reaches the caller. The call runs the function and
#   returns its value; after three failures in a row the backend is skipped for a short
#   cool-down, then probed again; one BackendFailed event per second per cache at most.
# - Local tier (`local_ttl=`, shared backends only): a fresh value read from the backend is
#   also kept in a region of this process (a _Local), answered by the memory hit path until
#   `local_ttl` passes or its freshness would end. Invalidations delete in the backend first,
#   then drop the names from this process's regions and publish them (Broadcaster) to the
#   others. A region admits a value only while its subscription is live and no message
#   arrived since the read began (its generation is unchanged), so an invalidation racing a
#   read never leaves the old value behind; a lost subscription empties the region.
# - An entry stores `(value, fresh_until or 0.0, delta)` in memory and `(value, delta)` in a
#   shared backend (whose TTL says how fresh it is); delta is how long the value took to
#   compute, for early refresh (_core/cache.py).
from __future__ import annotations

import contextvars
import enum
import itertools
import os
import random
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator, Hashable, Sequence
from datetime import timedelta
from functools import partial
from typing import (
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

import attrs
import wrapt

from . import _config, exceptions
from ._config import DEFAULTS, check_namespace, on_change
from ._core.cache import CachePolicy, Freshness, judge
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, Wrapper
from ._drive import (
    CALL,
    Join,
    Op,
    Procedure,
    Spawn,
    backend_failed,
    emit,
    run_async,
    run_sync,
    type_name,
)
from ._flight import Flight, Flights, LateError
from ._keys import CallKeys, digest
from .backends._types import Claim, Fetched
from .backends.memory import LruStore, MemoryBackend
from .events import CacheHit, CacheMissed, CacheRefreshed, CacheStaleServed
from .typing import Backend, Broadcaster, Subscription

__all__ = [
    "CacheOptions",
    "CachePolicy",
    "CacheStatus",
    "Cached",
    "HIT_COUNTING",
    "Tallies",
    "ainvalidate_tags",
    "cache_status",
    "cached",
    "cached_functions",
    "count_hits",
    "invalidate_tags",
    "invalidating_tags",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
R2 = TypeVar("R2")
Q = ParamSpec("Q")
_T = TypeVar("_T")

_FAILURES_BEFORE_COOLDOWN = 3
_COOLDOWN = 0.5  # seconds a failing backend is skipped before it is probed again
_EVENT_INTERVAL = 1.0  # seconds between two BackendFailed events of one cache


class CacheStatus(enum.Enum):
    """How the latest cached call in this context was answered (see :func:`cache_status`)."""

    HIT = "hit"
    """A fresh stored value."""
    MISS = "miss"
    """No usable value, so the function ran (in this call or in the one it waited for)."""
    STALE = "stale"
    """A value past its ``ttl`` but within ``stale_ttl``, while a refresh runs."""
    BYPASS = "bypass"
    """The backend failed or is cooling down, so the function ran and nothing was stored."""


_HIT = CacheStatus.HIT  # a module global: enum member lookups are slow on Python 3.11

_STATUS: contextvars.ContextVar[CacheStatus | None] = contextvars.ContextVar(
    "resilient_cache_status", default=None
)


def cache_status() -> CacheStatus | None:
    """Return how the latest cached call in this thread or task was answered.

    ``None`` until a cached function has been called in this context. Read it right after
    the call, e.g. to set an ``X-Cache-Status`` response header.

    Example:
        >>> import resilient
        >>> @resilient.cached(ttl=60)
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square(3), resilient.cache_status().value
        (9, 'miss')
        >>> square(3), resilient.cache_status().value
        (9, 'hit')
    """
    return _STATUS.get()


class CacheOptions(TypedDict, total=False):
    """The keyword arguments of :func:`cached`: the fields of :class:`CachePolicy`."""

    ttl: float | timedelta
    maxsize: int
    stale_ttl: float | timedelta
    early_refresh: float
    key: str | Callable[..., object] | None
    condition: Callable[[Any], object] | None
    cache_none: bool
    tags: list[str] | tuple[str, ...]
    lease_ttl: float | timedelta
    backend: Backend | None
    local_ttl: float | timedelta | None
    name: str | None


class Cached(Protocol[P, R_co]):
    """A cached function: call it as before, and invalidate what it stored.

    On a method, the instance's attribute is a ``Cached`` of the method's parameters after
    ``self``, so ``repo.get("x")`` and ``repo.get.invalidate("x")`` are checked alike.
    """

    @property
    def __name__(self) -> str:
        """The decorated function's name."""

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> Self: ...
    @overload
    def __get__(
        self: Cached[Concatenate[_T, Q], R2], instance: _T, owner: type[Any], /
    ) -> Cached[Q, R2]: ...
    def __get__(self, instance: Any, owner: type[Any], /) -> Any:
        """Bind the cached method to *instance*, as a function's ``__get__`` does."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function, answered from the cache when possible."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the value stored for these arguments."""

    def invalidate_all(self) -> None:
        """Drop every value this function stored."""

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the value stored for these arguments, from async code."""

    async def ainvalidate_all(self) -> None:
        """Drop every value this function stored, from async code."""


@attrs.define(slots=True)
class _Health:
    failures: int = 0
    skip_until: float = 0.0
    last_event: float = float("-inf")
    suppressed: int = 0


class _HitCounting:
    """Whether hits are counted, in this process: off unless asked for (`count_hits`)."""

    on = False


HIT_COUNTING = _HitCounting()


def count_hits(enabled: bool) -> None:
    """Count the hits of every cached function of this process from now on, or stop.

    The hit paths read the switch from their snapshots, which are dropped here.
    """
    HIT_COUNTING.on = enabled
    _drop_fast()


class Tallies:
    """How one cached function's calls were answered, in this process, counted lock-free.

    Each count is an itertools.count advanced once per call (``next()`` is atomic). Hits are
    counted only while `HIT_COUNTING` is on: on the memory hit path, whose whole cost is a few
    hundred nanoseconds, even one more call shows. Reading a count advances it too: a snapshot
    reads them all under a lock and takes away the reads made before.
    """

    __slots__ = (
        "_lock",
        "_reads",
        "bypassed",
        "hits",
        "misses",
        "refresh_failed",
        "refreshed",
        "stale",
    )

    def __init__(self) -> None:
        self.hits = itertools.count()
        self.misses = itertools.count()
        self.stale = itertools.count()
        self.bypassed = itertools.count()
        self.refreshed = itertools.count()
        self.refresh_failed = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, int]:
        """Return every count now, by name."""
        counts = {
            "hits": self.hits,
            "misses": self.misses,
            "stale": self.stale,
            "bypassed": self.bypassed,
            "refreshed": self.refreshed,
            "refresh_failed": self.refresh_failed,
        }
        with self._lock:
            read = {name: next(count) - self._reads for name, count in counts.items()}
            self._reads += 1
        return read


def _tag_index(namespace: str, tag: str) -> str:
    return f"{namespace}:cache-tag:{digest(tag, 'tag')}"


def _channel(namespace: str) -> str:
    """The channel on which a namespace's invalidations reach every process's local tier."""
    return f"{namespace}:cache:invalidated"


class _Local:
    """A cache's local tier in front of one shared backend: a region and its subscription.

    Messages name entries to drop: the shared keys, "all" indexes and tag indexes the
    entries were stored under, which the region indexes them by too.
    """

    __slots__ = (
        "__weakref__",
        "backend",
        "generation",
        "lock",
        "namespace",
        "store",
        "subscription",
    )

    def __init__(self, backend: Broadcaster, namespace: str, maxsize: int) -> None:
        self.backend = backend
        self.namespace = namespace
        self.store = LruStore(maxsize)
        self.generation = 0  # messages heard; an admission checks none came since its read
        self.lock = threading.Lock()
        # the subscription refers to this tier weakly, and ends when the tier is collected
        # (with its cached function), so that the backend's thread does not keep it alive
        self.subscription: Subscription = backend.subscribe(
            _channel(namespace), _weak_listener(weakref.ref(self))
        )
        weakref.finalize(self, self.subscription.close)
        _LOCALS.add(self)

    def heard(self, message: str | None) -> None:
        """Drop the entries *message* names; on None (messages may be lost), every entry."""
        with self.lock:
            self.generation += 1
            if message is None:
                self.store.clear()
            else:
                self.store.purge(message.split(), DEFAULTS.clock.monotonic())

    def admit(
        self,
        key: Hashable,
        entry: tuple[object, float, float],
        life: float,
        indexes: tuple[str, ...],
        generation: int,
    ) -> None:
        """Keep *entry* for *life* seconds, unless a message arrived since *generation*."""
        with self.lock:
            if generation == self.generation and self.subscription.live:
                now = DEFAULTS.clock.monotonic()
                self.store.put(key, entry, ttl=life, indexes=indexes, token=None, now=now)


def _weak_listener(local: weakref.ref[_Local]) -> Callable[[str | None], None]:
    def listener(message: str | None) -> None:
        alive = local()
        if alive is not None:
            alive.heard(message)

    return listener


# every local tier of this process, to tell of this process's own invalidations and to empty
# in a forked child (which has no subscription thread: its caches subscribe anew)
_LOCALS: weakref.WeakSet[_Local] = weakref.WeakSet()


def _heard_here(backend: object, namespace: str, message: str) -> None:
    """Drop what *message* names from every local tier of this process on *backend*."""
    for local in list(_LOCALS):
        if local.backend is backend and local.namespace == namespace:
            local.heard(message)


class _CachedCall:
    """The cache of one decorated function: its keys, flights, regions and health."""

    def __init__(
        self, policy: CachePolicy, keys: CallKeys, name: str, inner: Call, *, is_async: bool
    ) -> None:
        self.policy = policy
        self.keys = keys
        # how many positional arguments make a call whose args tuple is its key (plain ints:
        # indexing keys.arity with a bool is the slowest step of the hit path on 3.11)
        self.arity, self.bound_arity = keys.arity
        self.name = name
        self.inner = inner
        self.flights = Flights()
        self.health = _Health()
        self.tallies = Tallies()
        # What the hit path reads, while it holds: the dict of the region this process keeps
        # for the backend and namespace in use (a MemoryBackend's, or the local tier's), the
        # clock's monotonic(), and whether observers are installed. Dropped by any change of
        # the defaults (_config.on_change), and made again by the next call that misses.
        self.fast: (
            tuple[
                OrderedDict[Hashable, Any], Callable[[], float], bool, itertools.count[int] | None
            ]
            | None
        ) = None
        self.local: _Local | None = None
        self.local_lock = threading.Lock()
        # keys whose last refresh raised (bounded like the region), for stale-if-error events
        self.refresh_failures: dict[Hashable, None] = {}
        # what call_sync does when the hit path cannot answer: the procedure, or (for an
        # async function, whose step awaits it instead) hand back _MISSING
        self.miss: Call = _missing if is_async else self._miss_sync

    # -- the call steps -------------------------------------------------------------------

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # The hit path, in this one frame for sync functions. A call given exactly its
        # positional parameters is keyed by its args tuple as is. It is not checked for
        # uncacheable arguments here: a key that is found was checked when it was stored,
        # and one that is not found goes to the procedure, which checks.
        fast = self.fast
        if fast is not None:
            data, monotonic, noted, hits = fast
            key: Hashable = args
            if kwargs or len(args) != (self.bound_arity if instance is not None else self.arity):
                key = self.keys.local(instance, args, kwargs)
            try:
                entry = data.get(key)
            except TypeError:  # an unhashable argument: the procedure keys it by digest
                entry = None
            if entry is not None and monotonic() < entry[0][1]:
                try:  # noqa: SIM105 - contextlib.suppress costs three calls on the hit path
                    data.move_to_end(key)
                except KeyError:  # evicted by another thread meanwhile
                    pass
                if _STATUS.get() is not _HIT:  # reading is cheaper than setting the same value
                    _STATUS.set(_HIT)
                if noted:  # observers to tell or a hit to count: one check when neither
                    if hits is not None:
                        next(hits)
                    if DEFAULTS.observers:
                        emit(DEFAULTS, CacheHit(policy=self.name, time=monotonic()))
                return entry[0][0]
        return self.miss(wrapped, instance, args, kwargs)

    def _miss_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        backend = self.policy.backend or DEFAULTS.backend
        procedure = self._procedure(backend, wrapped, instance, args, kwargs)
        return run_sync(procedure, backend, partial(self.inner, wrapped, instance, args, kwargs))

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        hit = self.call_sync(wrapped, instance, args, kwargs)  # self.miss gives _MISSING
        if hit is not _MISSING:
            return hit
        backend = self.policy.backend or DEFAULTS.backend
        procedure = self._procedure(backend, wrapped, instance, args, kwargs)
        return await run_async(
            procedure, backend, partial(self.inner, wrapped, instance, args, kwargs)
        )

    def _keep_fast(self, backend: object, namespace: str, data: OrderedDict[Hashable, Any]) -> None:
        # only for what a call made now would use: the policy's backend or the configured one,
        # and only if the defaults did not change while the snapshot was taken
        generation = _config.generation
        counting = HIT_COUNTING.on
        if namespace is DEFAULTS.namespace and backend is (self.policy.backend or DEFAULTS.backend):
            self.fast = (
                data,
                DEFAULTS.clock.monotonic,
                bool(DEFAULTS.observers) or counting,
                self.tallies.hits if counting else None,
            )
            _FAST.add(self)
            if _config.generation != generation or HIT_COUNTING.on is not counting:
                self.fast = None

    # -- procedures -----------------------------------------------------------------------

    def _procedure(
        self,
        backend: object,
        wrapped: Any,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Procedure:
        namespace = DEFAULTS.namespace
        tags = self.keys.tags(self.policy.tags, instance, args, kwargs)
        indexes = tuple(_tag_index(namespace, tag) for tag in tags)
        if isinstance(backend, MemoryBackend):
            store = self._region(backend, namespace)
            return self._from_memory(store, self.keys.local(instance, args, kwargs), indexes)
        shared = (
            f"{namespace}:cache:{self._safe_name}:{{{self.keys.shared(instance, args, kwargs)}}}"
        )
        indexes = (self._all_index(namespace), *indexes)
        if self.policy.local_ttl is None:
            return self._from_backend(shared, indexes, None)
        near = (self._local(backend, namespace), self.keys.local(instance, args, kwargs))
        return self._from_backend(shared, indexes, near)

    @property
    def _safe_name(self) -> str:
        return self.name.replace("{", "(").replace("}", ")")

    def _all_index(self, namespace: str) -> str:
        return f"{namespace}:cache:{self._safe_name}:all"

    def _region(self, backend: MemoryBackend, namespace: str) -> LruStore:
        store = backend._region(f"{namespace}:cache:{self.name}", self.policy.maxsize)
        self._keep_fast(backend, namespace, store.data)
        return store

    def _local(self, backend: object, namespace: str) -> _Local:
        local = self.local
        if local is None or local.backend is not backend or local.namespace != namespace:
            if not isinstance(backend, Broadcaster):
                raise TypeError(
                    f"@cached(local_ttl=...) on {self.name}: {backend!r} cannot tell other "
                    "processes of invalidations (it is no resilient.typing.Broadcaster), so "
                    "their local copies would go stale; drop local_ttl= or use RedisBackend"
                )
            with self.local_lock:
                local = self.local
                if local is None or local.backend is not backend or local.namespace != namespace:
                    if local is not None:
                        local.subscription.close()
                    local = self.local = _Local(backend, namespace, self.policy.maxsize)
                    _LOCAL_CACHES.add(self)
        self._keep_fast(backend, namespace, local.store.data)
        return local

    def kept(self, backend: object, namespace: str) -> int | None:
        """Return how many values this process keeps for *backend* and *namespace*, if any.

        Its region of a MemoryBackend, or its local tier in front of a shared backend.
        """
        if isinstance(backend, MemoryBackend):
            region = backend._regions.get(f"{namespace}:cache:{self.name}")
            return None if region is None else len(region.data)
        local = self.local
        if local is not None and local.backend is backend and local.namespace == namespace:
            return len(local.store.data)
        return None

    def _forget_local(self) -> None:
        # in a forked child: the parent's copies are heard of by no thread here
        self.local_lock = threading.Lock()
        self.local = self.fast = None

    def _from_memory(self, store: LruStore, key: Hashable, indexes: tuple[str, ...]) -> Procedure:
        clock = DEFAULTS.clock
        while True:
            now = clock.monotonic()
            entry = store.data.get(key)
            if entry is not None and entry[1] > now:
                value, _, delta = cast("tuple[object, float, float]", entry[0])
                verdict = judge(self.policy, entry[1] - now, delta, 1.0 - random.random())
                if verdict is not Freshness.FRESH:
                    refresh, leads = self.flights.join(("refresh", key))
                    if leads:
                        yield Spawn(self._refresh_memory(store, key, indexes, refresh))
                return self._served(key, value, verdict)
            flight, leads = self.flights.join(key)
            if not leads:
                yield from self._follow(flight, now)
                if flight.abandoned:
                    continue
                return self._followed(flight, now)
            try:
                value = yield CALL
            except BaseException as exc:
                self.flights.land(key, flight, error=exc)
                raise
            self._store_memory(store, key, value, clock.monotonic() - now, indexes)
            self.flights.land(key, flight, value=value, extra=CacheStatus.MISS)
            return self._missed(value, now)

    def _store_memory(
        self, store: LruStore, key: Hashable, value: object, delta: float, indexes: tuple[str, ...]
    ) -> None:
        if self.policy.stores(value):
            now = DEFAULTS.clock.monotonic()
            fresh_until = now + self.policy.ttl - self.policy.early_horizon(delta)
            store.put(
                key,
                (value, fresh_until, delta),
                ttl=self.policy.stored_ttl,
                indexes=indexes,
                token=None,
                now=now,
            )

    def _refresh_memory(
        self, store: LruStore, key: Hashable, indexes: tuple[str, ...], marker: Any
    ) -> Procedure:
        start = DEFAULTS.clock.monotonic()
        try:
            value = yield CALL
        except Exception as exc:
            self._refreshed(key, start, exc)
            return None
        finally:
            self.flights.land(("refresh", key), marker)
        self._store_memory(store, key, value, DEFAULTS.clock.monotonic() - start, indexes)
        self._refreshed(key, start, None)
        return None

    def _from_backend(
        self, key: str, indexes: tuple[str, ...], near: tuple[_Local, Hashable] | None
    ) -> Procedure:
        clock = DEFAULTS.clock
        while True:
            flight, leads = self.flights.join(key)
            if leads:
                break
            yield from self._follow(flight, clock.monotonic())
            if not flight.abandoned:
                return self._followed(flight, clock.monotonic())
        try:
            value, status = yield from self._lead(key, indexes, near)
        except LateError:  # this caller's deadline came: its followers wait on, one leading
            self.flights.abandon(key, flight)
            raise self._late() from None
        except BaseException as exc:
            self.flights.land(key, flight, error=exc)
            raise
        self.flights.land(key, flight, value=value, extra=status)
        return value

    def _follow(self, flight: Flight, start: float) -> Procedure:
        """Wait for *flight* to land, never past the caller's deadline (then raise)."""
        ambient = current_deadline()  # the caller's (`resilient.deadline`)
        if ambient is None:
            yield Join(flight.landing)
        elif not (yield Join(flight.landing, ambient - start)):
            raise self._late()

    def _late(self) -> exceptions.TimeoutError:
        return exceptions.TimeoutError(self.name, None, "waited for a value being computed past")

    def _patience(self, now: float) -> float:
        """Seconds to wait now for another process's computation: its lease, cut to the deadline.

        Raises LateError once the caller's deadline has come.
        """
        ambient = current_deadline()  # the caller's (`resilient.deadline`)
        if ambient is None:
            return self.policy.lease_ttl
        if ambient <= now:
            raise LateError
        return min(self.policy.lease_ttl, ambient - now)

    def _lead(
        self, key: str, indexes: tuple[str, ...], near: tuple[_Local, Hashable] | None
    ) -> Procedure:
        """Read *key*, or compute and store it, or wait for the process computing it.

        Returns the value and how it was answered; raises LateError once the caller's deadline
        comes while another process computes it.
        """
        clock = DEFAULTS.clock
        start = clock.monotonic()
        if start < self.health.skip_until:
            return (yield from self._bypass())
        generation = -1 if near is None else near[0].generation  # before the read
        claim = Claim(_new_token(), self.policy.lease_ttl, self.policy.stale_ttl)
        waited = False
        while True:
            try:
                fetched: Fetched = yield Op("get", (key,), {"claim": claim})
            except Exception as exc:
                self._failed("get", exc)
                return (yield from self._bypass())
            self._succeeded()
            entry = fetched.value
            if type(entry) is tuple and len(entry) == 2 and fetched.ttl is not None:
                value, delta = entry
                verdict = judge(self.policy, fetched.ttl, float(delta), 1.0 - random.random())
                if verdict is not Freshness.FRESH:
                    refresh, leads = self.flights.join(("refresh", key))
                    if leads:
                        token = claim.token if fetched.claimed else None
                        yield Spawn(self._refresh_backend(key, indexes, token, refresh))
                    elif fetched.claimed:  # a refresh runs here already: let it own the key
                        yield from self._release(key, claim.token)
                elif near is not None:
                    self._keep_near(
                        near,
                        key,
                        indexes,
                        value=value,
                        fresh_left=fetched.ttl - self.policy.stale_ttl,
                        delta=delta,
                        generation=generation,
                    )
                return self._found(key, value, verdict, start, waited=waited)
            if fetched.claimed:
                value = yield from self._fill(key, indexes, claim.token, start)
                if near is not None and self.policy.stores(value):
                    self._keep_near(
                        near,
                        key,
                        indexes,
                        value=value,
                        fresh_left=self.policy.ttl,
                        delta=clock.monotonic() - start,
                        generation=generation,
                    )
                return self._missed(value, start), CacheStatus.MISS
            now = clock.monotonic()
            if now - start >= self.policy.lease_ttl:
                # the filler outlived its lease without storing: compute rather than wait on
                value = yield CALL
                return self._missed(value, start), CacheStatus.MISS
            wait = self._patience(now)  # outside the try: LateError is not a backend's failure
            try:
                yield Op("wait_released", (key, wait), {})
            except Exception as exc:
                self._failed("wait", exc)
                return (yield from self._bypass())
            waited = True

    def _keep_near(
        self,
        near: tuple[_Local, Hashable],
        key: str,
        indexes: tuple[str, ...],
        *,
        value: object,
        fresh_left: float,
        delta: float,
        generation: int,
    ) -> None:
        local, local_key = near
        life = self.policy.local_life(fresh_left, float(delta))
        if life > 0:
            fresh_until = DEFAULTS.clock.monotonic() + life
            local.admit(local_key, (value, fresh_until, delta), life, (key, *indexes), generation)

    def _fill(self, key: str, indexes: tuple[str, ...], token: str, start: float) -> Procedure:
        try:
            value = yield CALL
        except BaseException:
            yield from self._release(key, token)
            raise
        delta = DEFAULTS.clock.monotonic() - start
        if self.policy.stores(value):
            try:
                yield Op(
                    "put",
                    (key, (value, delta)),
                    {"ttl": self.policy.stored_ttl, "indexes": indexes, "token": token},
                )
            except Exception as exc:
                self._failed("put", exc)
                yield from self._release(key, token)
        else:
            yield from self._release(key, token)
        return value

    def _release(self, key: str, token: str) -> Procedure:
        try:
            yield Op("release", (key, token), {})
        except Exception as exc:
            self._failed("release", exc)  # the claim expires with its lease

    def _refresh_backend(
        self, key: str, indexes: tuple[str, ...], token: str | None, marker: Any
    ) -> Procedure:
        start = DEFAULTS.clock.monotonic()
        try:
            if token is None:  # an early refresh: claim the key first, or leave it to others
                claim = Claim(_new_token(), self.policy.lease_ttl, float("inf"))
                try:
                    fetched: Fetched = yield Op("get", (key,), {"claim": claim})
                except Exception as exc:
                    self._failed("get", exc)
                    return None
                if not fetched.claimed:
                    return None
                token = claim.token
            try:
                yield from self._fill(key, indexes, token, start)
            except Exception as exc:
                self._refreshed(key, start, exc)
                return None
            self._refreshed(key, start, None)
            return None
        finally:
            self.flights.land(("refresh", key), marker)

    def _bypass(self) -> Procedure:
        start = DEFAULTS.clock.monotonic()
        value = yield CALL
        self._tally(CacheStatus.BYPASS)
        _STATUS.set(CacheStatus.BYPASS)
        if DEFAULTS.observers:
            emit(DEFAULTS, CacheMissed(policy=self.name, time=start, elapsed=0.0))
        return value, CacheStatus.BYPASS

    # -- outcomes -------------------------------------------------------------------------

    def _served(self, key: Hashable, value: object, verdict: Freshness) -> object:
        status = _served_status(verdict)
        self._tally(status)
        _STATUS.set(status)
        if DEFAULTS.observers:
            now = DEFAULTS.clock.monotonic()
            if status is CacheStatus.STALE:
                reason = "refresh_failed" if key in self.refresh_failures else "refreshing"
                emit(DEFAULTS, CacheStaleServed(policy=self.name, time=now, reason=reason))
            else:
                emit(DEFAULTS, CacheHit(policy=self.name, time=now))
        return value

    def _found(
        self, key: Hashable, value: object, verdict: Freshness, start: float, *, waited: bool
    ) -> tuple[object, CacheStatus]:
        """Answer with a value read from the backend, after waiting for its computation or not."""
        if waited:  # another process computed it while this call waited: a miss here too
            return self._missed(value, start), CacheStatus.MISS
        return self._served(key, value, verdict), _served_status(verdict)

    def _missed(self, value: object, start: float) -> object:
        next(self.tallies.misses)
        _STATUS.set(CacheStatus.MISS)
        if DEFAULTS.observers:
            now = DEFAULTS.clock.monotonic()
            emit(DEFAULTS, CacheMissed(policy=self.name, time=now, elapsed=now - start))
        return value

    def _followed(self, flight: Any, start: float) -> object:
        if flight.error is not None:
            raise flight.error
        status = flight.extra
        if status is CacheStatus.MISS:
            return self._missed(flight.value, start)
        self._tally(status)
        _STATUS.set(status)
        return flight.value

    def _tally(self, status: CacheStatus) -> None:
        """Count a call answered with *status* other than a miss."""
        tallies = self.tallies
        if status is CacheStatus.HIT:
            if HIT_COUNTING.on:
                next(tallies.hits)
        elif status is CacheStatus.STALE:
            next(tallies.stale)
        else:
            next(tallies.bypassed)

    def _refreshed(self, key: Hashable, start: float, error: Exception | None) -> None:
        failures = self.refresh_failures
        if error is None:
            next(self.tallies.refreshed)
            failures.pop(key, None)
        else:
            next(self.tallies.refresh_failed)
            failures[key] = None
            if len(failures) > self.policy.maxsize:
                failures.pop(next(iter(failures)), None)
        if DEFAULTS.observers:
            now = DEFAULTS.clock.monotonic()
            emit(
                DEFAULTS,
                CacheRefreshed(
                    policy=self.name,
                    time=now,
                    outcome="success" if error is None else "failure",
                    error_type=None if error is None else type_name(error),
                    elapsed=now - start,
                ),
            )

    def _failed(self, operation: str, error: Exception) -> None:
        health = self.health
        now = DEFAULTS.clock.monotonic()
        health.failures += 1
        if health.failures >= _FAILURES_BEFORE_COOLDOWN:
            health.skip_until = now + _COOLDOWN
        if now - health.last_event < _EVENT_INTERVAL:
            health.suppressed += 1
            return
        suppressed, health.suppressed, health.last_event = health.suppressed, 0, now
        backend = self.policy.backend or DEFAULTS.backend
        backend_failed(self.name, backend, operation, error, suppressed)

    def _succeeded(self) -> None:
        if self.health.failures:
            self.health.failures = 0

    # -- invalidation ---------------------------------------------------------------------

    def invalidation(
        self, instance: Any, args: tuple[Any, ...] | None, kwargs: dict[str, Any]
    ) -> tuple[object, Procedure]:
        """Return the backend and the procedure that drops one call's value (or all, for None)."""
        backend = self.policy.backend or DEFAULTS.backend
        return backend, self._invalidate(backend, instance, args, kwargs)

    def _invalidate(
        self,
        backend: object,
        instance: Any,
        args: tuple[Any, ...] | None,
        kwargs: dict[str, Any],
    ) -> Procedure:
        namespace = DEFAULTS.namespace
        if isinstance(backend, MemoryBackend):
            store = self._region(backend, namespace)
            if args is None:
                store.clear()
            else:
                store.delete([self.keys.local(instance, args, kwargs)], DEFAULTS.clock.monotonic())
            return None
        if args is None:
            names = [self._all_index(namespace)]
            yield Op("purge", (names,), {})
        else:
            digest_ = self.keys.shared(instance, args, kwargs)
            names = [f"{namespace}:cache:{self._safe_name}:{{{digest_}}}"]
            yield Op("delete", (names,), {})
        if isinstance(backend, Broadcaster):
            message = " ".join(names)
            _heard_here(backend, namespace, message)
            yield Op("publish", (_channel(namespace), message), {})
        return None


_MISSING: Any = object()


def _missing(*_: object) -> Any:
    return _MISSING


# the caches holding a hit-path snapshot of the defaults, dropped when the defaults change
_FAST: weakref.WeakSet[_CachedCall] = weakref.WeakSet()


def _drop_fast() -> None:
    for cache in list(_FAST):
        cache.fast = None
    _FAST.clear()


on_change(_drop_fast)


class _Tokens:
    """Make claim tokens: a random 128-bit prefix per process, then a counter.

    Cheaper than ``secrets`` per call; a forked child draws a prefix of its own.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(16)
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}.{next(self.counter)}"  # next() on a count is atomic in CPython


_new_token = _Tokens()
os.register_at_fork(after_in_child=_new_token.reset)

# the caches with a local tier, to drop it in a forked child
_LOCAL_CACHES: weakref.WeakSet[_CachedCall] = weakref.WeakSet()


def _forget_locals() -> None:
    for cache in list(_LOCAL_CACHES):
        cache._forget_local()
    _LOCAL_CACHES.clear()
    _LOCALS.clear()


os.register_at_fork(after_in_child=_forget_locals)


# every cached function of this process, for its statistics (resilient.admin)
_CACHES: weakref.WeakSet[_CachedCall] = weakref.WeakSet()


def cached_functions() -> list[_CachedCall]:
    """Return the cache of every cached function alive in this process."""
    return list(_CACHES)


def _unlock_tallies() -> None:
    # in a forked child: a parent's thread may have held a lock of its snapshots
    for cache in list(_CACHES):
        cache.tallies._lock = threading.Lock()


os.register_at_fork(after_in_child=_unlock_tallies)


def _served_status(verdict: Freshness) -> CacheStatus:
    return CacheStatus.STALE if verdict is Freshness.STALE else CacheStatus.HIT


def _cache_of(steps: tuple[Call, ...]) -> _CachedCall:
    for step in steps:
        owner = getattr(step, "__self__", None)
        if isinstance(owner, _CachedCall):
            return owner
    raise AssertionError("a cached wrapper without its cache")  # pragma: no cover


class _BoundCachedWrapper(wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]  # wrapt's own generics
    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        backend, procedure = _cache_of(self._self_parent._self_steps).invalidation(
            self._self_instance, args, kwargs
        )
        run_sync(procedure, backend)

    def invalidate_all(self) -> None:
        self._self_parent.invalidate_all()

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> None:
        backend, procedure = _cache_of(self._self_parent._self_steps).invalidation(
            self._self_instance, args, kwargs
        )
        await run_async(procedure, backend)

    async def ainvalidate_all(self) -> None:
        await self._self_parent.ainvalidate_all()


class _CachedWrapper(Wrapper):
    __bound_function_wrapper__ = _BoundCachedWrapper

    def invalidate(self, *args: Any, **kwargs: Any) -> None:
        backend, procedure = _cache_of(self._self_steps).invalidation(None, args, kwargs)
        run_sync(procedure, backend)

    def invalidate_all(self) -> None:
        backend, procedure = _cache_of(self._self_steps).invalidation(None, None, {})
        run_sync(procedure, backend)

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> None:
        backend, procedure = _cache_of(self._self_steps).invalidation(None, args, kwargs)
        await run_async(procedure, backend)

    async def ainvalidate_all(self) -> None:
        backend, procedure = _cache_of(self._self_steps).invalidation(None, None, {})
        await run_async(procedure, backend)


@attrs.frozen
class _CacheLayer:
    policy: CachePolicy
    wrapper_type: type[Wrapper] = _CachedWrapper

    def build(self, inner: Call, target: Target) -> Call:
        keys = CallKeys(target.function, target.name, self.policy.key)
        keys.check_tags(self.policy.tags)
        cache = _CachedCall(
            self.policy, keys, self.policy.name or target.name, inner, is_async=target.is_async
        )
        _CACHES.add(cache)
        return cache.call_async if target.is_async else cache.call_sync


class _CacheDecorator(Protocol):
    @overload
    def __call__(
        self, function: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Cached[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, function: Callable[P, R], /) -> Cached[P, R]: ...


def cached(
    policy: CachePolicy | None = None, /, **options: Unpack[CacheOptions]
) -> _CacheDecorator:
    """Cache a function's results: sync or async, functions and methods.

    Concurrent calls that miss the same key run the function once (in this process always,
    and in the whole cluster on a shared backend); a stale value can be served while one
    refresh runs; a backend that fails is bypassed, never raised.

    Args:
        policy: A :class:`CachePolicy` to use as is; or give its fields as keywords.
        **options: The fields of :class:`CachePolicy` (``ttl`` is required).

    Raises:
        TypeError, ValueError: At decoration, for options that make no sense, with a message
            that says what to write instead.

    Example:
        >>> import resilient
        >>> calls = []
        >>> @resilient.cached(ttl=300)
        ... def profile(user_id: int) -> dict[str, object]:
        ...     calls.append(user_id)
        ...     return {"id": user_id}
        >>> profile(7), profile(user_id=7), calls
        ({'id': 7}, {'id': 7}, [7])
        >>> profile.invalidate(7)
        >>> profile(7), calls
        ({'id': 7}, [7, 7])
    """
    if policy is None:
        if "ttl" not in options:
            raise TypeError("cached() needs ttl=, the seconds a value stays fresh, e.g. ttl=300")
        policy = CachePolicy(**options)
    elif options:
        policy = attrs.evolve(policy, **options)
    if policy.backend is not None and not isinstance(policy.backend, Backend):
        raise TypeError(
            f"backend={policy.backend!r} is not a backend: it needs the methods of "
            "resilient.typing.Backend"
        )
    if policy.local_ttl is not None and policy.backend is not None:
        if isinstance(policy.backend, MemoryBackend):
            raise ValueError(
                "local_ttl= keeps local copies of a shared backend's values, and a "
                "MemoryBackend is local already: drop local_ttl="
            )
        if not isinstance(policy.backend, Broadcaster):
            raise TypeError(
                f"local_ttl= needs a backend that tells every process of invalidations (a "
                f"resilient.typing.Broadcaster, such as RedisBackend); {policy.backend!r} is not"
            )
    if policy.name is not None:
        check_namespace(policy.name.replace(":", "."))
    return cast("_CacheDecorator", Decorator(_CacheLayer(policy), "@cached"))


def invalidate_tags(*tags: str, backend: Backend | None = None) -> int:
    """Drop every value stored under any of *tags*, by any cached function; return how many.

    Args:
        tags: The tags given to ``@cached(tags=...)``, with templates filled in.
        backend: Where to invalidate; by default the configured backend.
    """
    target = backend or DEFAULTS.backend
    return run_sync(invalidating_tags(target, DEFAULTS.namespace, tags), target)


async def ainvalidate_tags(*tags: str, backend: Backend | None = None) -> int:
    """Drop every value stored under any of *tags*, from async code; return how many."""
    target = backend or DEFAULTS.backend
    return await run_async(invalidating_tags(target, DEFAULTS.namespace, tags), target)


def invalidating_tags(
    backend: object, namespace: str, tags: Sequence[str]
) -> Generator[object, Any, int]:
    """Drop what *tags* name on *backend* in *namespace*; tell every local tier; how many."""
    indexes = [_tag_index(namespace, tag) for tag in tags]
    count = int((yield Op("purge", (indexes,), {})))
    if isinstance(backend, Broadcaster):
        message = " ".join(indexes)
        _heard_here(backend, namespace, message)
        yield Op("publish", (_channel(namespace), message), {})
    return count
