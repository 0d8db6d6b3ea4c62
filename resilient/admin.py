"""Operators' controls: see and act on the breakers, locks, records and caches of an application.

:class:`Admin` looks at one backend and one namespace. On a
:class:`~resilient.backends.RedisBackend` it sees what every process of the fleet keeps there,
from any process, the ones that made nothing included (a command line, an admin endpoint); on
a :class:`~resilient.backends.MemoryBackend`, what this process keeps. Every method that asks
the backend has an ``a``-prefixed twin for async code. See the Admin API page of the
documentation.
"""

# Rules of this module:
# - Each operation is written once, as a procedure of backend effects, which `run_sync` (the
#   plain methods) or `run_async` (the `a`-methods) performs on the admin's backend.
# - Things are found by scanning their capability's key prefix (`Inspector.scan`: bounded SCAN
#   steps on Redis, never KEYS), and read with `peek` and `get_versioned`. A scan asks for one
#   key more than `limit` and never reads it: it only tells that a listing was cut, which the
#   listing then says (`Listing.truncated`), since an operator must not take part for all.
#   Things are changed only through the primitives their capabilities use themselves (a
#   compare-and-set of a shared breaker's state, a lock's token-checked unlock), so that every
#   rule those keep still holds.
# - What is not kept on a backend is this process's own: breakers that are not shared.
# - What comes back is data: small frozen classes that `to_dict()` makes JSON-ready, listed
#   in a `Listing` (a list) or counted by a `Purged` (an int), which say what was cut.
from __future__ import annotations

import enum
from collections.abc import Generator, Iterable
from typing import Any, TypeAlias, TypeVar

import attrs

from ._breaker import live_breaker, live_breakers, report_transition
from ._breaker_shared import acting_on_stored, state_key, stored_state
from ._cache import HIT_COUNTING, cached_functions, count_hits, invalidating_tags
from ._config import DEFAULTS, check_namespace
from ._core.breaker import BreakerStats
from ._core.idempotency import RecordState, record_state
from ._drive import Op, emit, run_async, run_sync
from ._idempotent import record_of_key, records_prefix
from ._lock import lock_key, owner_of
from .backends._types import Held
from .backends.memory import MemoryBackend
from .events import LockForceReleased
from .exceptions import BackendUnavailableError, NotFoundError
from .typing import Inspector

__all__ = [
    "Admin",
    "BreakerInfo",
    "CacheInfo",
    "Listing",
    "LockInfo",
    "Purged",
    "RecordInfo",
    "RecordState",
    "count_cache_hits",
]

_T = TypeVar("_T")
_Steps: TypeAlias = Generator[object, Any, _T]  # a procedure of effects (see _drive.py)


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _as_dict(info: attrs.AttrsInstance) -> dict[str, object]:
    return attrs.asdict(info, value_serializer=lambda _, __, value: _plain(value))


class Listing(list[_T]):
    """What a listing of :class:`Admin` found: a list, which also says whether it was cut.

    A list in every other way (it compares equal to a list of the same items), so code that
    took the listings for lists keeps working. Its repr is a list's, but for a cut one,
    which shows ``truncated=True`` so that a glance in a console does not miss it.

    Attributes:
        truncated: Whether more keys than the admin's ``limit`` were under the capability's
            prefix, so that the listing looked at ``limit`` of them and left the others out:
            it may miss things, whatever its length (a key looked at may hold nothing, such as
            a lock released meanwhile). Raise the admin's ``limit``, or narrow the listing
            (``name=``, for records), to see them all.
    """

    __slots__ = ("truncated",)

    def __init__(self, items: Iterable[_T] = (), *, truncated: bool = False) -> None:
        super().__init__(items)
        self.truncated = truncated

    def __repr__(self) -> str:
        items = super().__repr__()
        return f"Listing({items}, truncated=True)" if self.truncated else items


class Purged(int):
    """How many records a purge deleted: an int, which also says whether it may have left some.

    Attributes:
        truncated: Whether the purge stopped with records of its state possibly left: more
            keys than the admin's ``limit`` were still under the prefix and none of the
            ``limit`` it looked at was one to delete (they were records of other states, or
            of other functions). Raise the admin's ``limit``, or narrow the purge (``name=``).
    """

    truncated: bool

    def __new__(cls, count: int, *, truncated: bool = False) -> Purged:
        """Return *count*, with whether the purge left records unseen."""
        purged = super().__new__(cls, count)
        purged.truncated = truncated
        return purged


@attrs.frozen(kw_only=True)
class BreakerInfo(BreakerStats):
    """A circuit breaker as an operator sees it.

    Attributes:
        name: The breaker's name.
        shared: Whether its state is kept on the backend for every process (``shared=True``);
            else it is this process's own.
        state: Its state; an open breaker whose open time has passed reads half-open.
        calls: Outcomes in its sliding window.
        failures: Failures among them.
        slow_calls: Slow calls among them.
        failure_rate: ``failures / calls``, or ``None`` for an empty window.
        slow_call_rate: ``slow_calls / calls``, or ``None`` for an empty window or when slow
            calls are not detected.
        consecutive_failures: Failures in a row, counted while closed.
        rejected: Calls refused since it was made or last reset (by every process, for a
            shared breaker, up to what they have not yet sent).
        trips: Trips since it last closed.
        until_half_open: Seconds until an open breaker lets probes through; ``None`` when it
            is not open.
    """

    shared: bool

    @classmethod
    def of(cls, stats: BreakerStats, *, shared: bool) -> BreakerInfo:
        """Return the info a breaker's :class:`~resilient.BreakerStats` give."""
        return cls(shared=shared, **attrs.asdict(stats, recurse=False))

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a dict of JSON types (the state as its value, e.g. ``"open"``)."""
        return _as_dict(self)


@attrs.frozen(kw_only=True)
class LockInfo:
    """A lock held now, as an operator sees it.

    Attributes:
        name: The lock's name; ``None`` for a lease taken otherwise than by
            :func:`resilient.lock` (its owner id does not name it).
        token: The fencing token of the lease.
        holder: The process holding it, as ``host:pid`` (``None`` when its owner id does not
            tell).
        ttl: Seconds the lease has left, unless its holder renews it.
    """

    name: str | None
    token: int
    holder: str | None
    ttl: float

    @classmethod
    def of(cls, held: Held) -> LockInfo:
        """Return the info of the lease *held* describes."""
        assert held.fence is not None  # a lock's, checked by the caller
        named = owner_of(held.token)
        holder, name = (None, None) if named is None else named
        return cls(name=name, token=held.fence, holder=holder, ttl=held.ttl)

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a dict of JSON types."""
        return _as_dict(self)


@attrs.frozen(kw_only=True)
class RecordInfo:
    """The record of one idempotency key, as an operator sees it.

    Attributes:
        name: The idempotent function's name (its ``name=``, or module and qualified name;
            braces shown as parentheses).
        id: The digest that stands for the key (and principal) in the backend: the key itself
            is never stored.
        state: Where the key's call is.
        ttl: Seconds the record is kept (for a call in progress, its claim's lease has left).
    """

    name: str
    id: str
    state: RecordState
    ttl: float | None

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a dict of JSON types (the state as its value)."""
        return _as_dict(self)


@attrs.frozen(kw_only=True)
class CacheInfo:
    """How one cached function's calls were answered, in this process since it started.

    Counted per process, not per fleet: each process answers its own calls.

    Attributes:
        name: The cached function's name (its ``name=``, or module and qualified name).
        hits: Calls answered with a fresh stored value, counted since
            :func:`count_cache_hits` turned counting on; ``None`` while it is off.
        misses: Calls that ran the function (or waited for the call that did).
        stale: Calls answered with a value past its ``ttl`` while a refresh ran.
        bypassed: Calls that ran the function because the backend failed or cooled down.
        refreshed: Background refreshes that stored a new value.
        refresh_failed: Background refreshes that raised.
        entries: Values this process keeps for it in memory: its region of the admin's
            MemoryBackend, or its local tier (``local_ttl=``) in front of the admin's shared
            backend; ``None`` when it keeps none there.
    """

    name: str
    hits: int | None
    misses: int
    stale: int
    bypassed: int
    refreshed: int
    refresh_failed: int
    entries: int | None

    def to_dict(self) -> dict[str, object]:
        """Return the fields as a dict of JSON types."""
        return _as_dict(self)


class Admin:
    """See and act on what `resilient` keeps on one backend, under one namespace.

    Args:
        backend: The backend to look at; by default the configured one. It must implement
            :class:`resilient.typing.Inspector` (MemoryBackend and RedisBackend do) for
            anything that finds things by listing them.
        namespace: The namespace to look in; by default the configured one.
        limit: The most keys one listing looks at, per capability: a bound on the work a
            listing makes the backend do. A listing that found more keys than that returns
            ``limit`` of them and says so (:attr:`Listing.truncated`).

    Raises:
        TypeError: For a *backend* that is not an Inspector.
        ValueError: For a namespace that could not be one, or a *limit* below 1.

    Every method that asks the backend raises
    :class:`~resilient.exceptions.BackendUnavailableError` when it fails (its cause is the
    backend's own error), never the driver's exception.

    Example:
        >>> import resilient
        >>> from resilient.admin import Admin
        >>> guard = resilient.breaker("warehouse-api")
        >>> Admin().open_breaker("warehouse-api").state
        <BreakerState.FORCED_OPEN: 'forced_open'>
        >>> Admin().reset_breaker("warehouse-api").state
        <BreakerState.CLOSED: 'closed'>
    """

    __slots__ = ("_backend", "_namespace", "limit")

    def __init__(
        self, backend: object = None, namespace: str | None = None, *, limit: int = 10_000
    ) -> None:
        if backend is not None:
            _check_inspector(backend)
        given: object = limit  # typed for callers; checked as whatever arrived
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(f"limit={limit!r} must be a whole number of keys, at least 1")
        self._backend = backend
        self._namespace = None if namespace is None else check_namespace(namespace)
        self.limit = limit

    def __repr__(self) -> str:
        return f"Admin(backend={self.backend!r}, namespace={self.namespace!r})"

    @property
    def backend(self) -> Any:
        """The backend looked at, the one given or else the one configured now."""
        return DEFAULTS.backend if self._backend is None else self._backend

    @property
    def namespace(self) -> str:
        """The namespace looked in, the one given or else the one configured now."""
        return DEFAULTS.namespace if self._namespace is None else self._namespace

    def _asking(self, operation: str, *args: object) -> _Steps[Any]:
        """Run the backend primitive *operation*: a failure is a BackendUnavailableError."""
        try:
            return (yield Op(operation, args, {}))
        except Exception as error:
            backend = self.backend
            raise BackendUnavailableError(
                f"resilient.admin: the backend failed to {operation}: {error!r}",
                backend=str(getattr(backend, "name", type(backend).__name__)),
                operation=operation,
            ) from error

    def _run(self, procedure: _Steps[_T]) -> _T:
        return run_sync(procedure, self.backend)

    async def _arun(self, procedure: _Steps[_T]) -> _T:
        return await run_async(procedure, self.backend)

    # breakers -----------------------------------------------------------------------------------

    def breakers(self) -> Listing[BreakerInfo]:
        """Return every breaker: those shared on the backend, and this process's own.

        Sorted by name. A shared breaker is read as the backend keeps it, which a process
        may be up to its ``sync_interval`` ahead of. Only the shared ones are looked for on
        the backend: ``truncated`` when more keys than ``limit`` were there.
        """
        return self._run(self._breakers())

    async def abreakers(self) -> Listing[BreakerInfo]:
        """Return every breaker (see :meth:`breakers`)."""
        return await self._arun(self._breakers())

    def breaker(self, name: str) -> BreakerInfo:
        """Return the breaker *name*.

        Raises:
            NotFoundError: When no breaker of that name is kept on the backend, or alive in
                this process.
        """
        return self._run(self._breaker(name))

    async def abreaker(self, name: str) -> BreakerInfo:
        """Return the breaker *name* (see :meth:`breaker`)."""
        return await self._arun(self._breaker(name))

    def open_breaker(self, name: str) -> BreakerInfo:
        """Force the breaker *name* open: every call is refused until it is closed or reset.

        A shared breaker changes on the backend at once; every process refuses calls from its
        next look at the backend: within the breaker's ``sync_interval`` (0.25 s by default)
        plus a round trip. Returns the breaker as it is now.

        Raises:
            NotFoundError: As :meth:`breaker`.
        """
        return self._run(self._acting(name, "force_open"))

    async def aopen_breaker(self, name: str) -> BreakerInfo:
        """Force the breaker *name* open (see :meth:`open_breaker`)."""
        return await self._arun(self._acting(name, "force_open"))

    def close_breaker(self, name: str) -> BreakerInfo:
        """Close the breaker *name*, whatever its state, with an empty window.

        Reaches other processes as :meth:`open_breaker` does.

        Raises:
            NotFoundError: As :meth:`breaker`.
        """
        return self._run(self._acting(name, "close"))

    async def aclose_breaker(self, name: str) -> BreakerInfo:
        """Close the breaker *name* (see :meth:`close_breaker`)."""
        return await self._arun(self._acting(name, "close"))

    def reset_breaker(self, name: str) -> BreakerInfo:
        """Close the breaker *name* and forget every count, its rejections included.

        Raises:
            NotFoundError: As :meth:`breaker`.
        """
        return self._run(self._acting(name, "reset"))

    async def areset_breaker(self, name: str) -> BreakerInfo:
        """Reset the breaker *name* (see :meth:`reset_breaker`)."""
        return await self._arun(self._acting(name, "reset"))

    def disable_breaker(self, name: str) -> BreakerInfo:
        """Disable the breaker *name*: every call passes, none is counted, until it is closed.

        Raises:
            NotFoundError: As :meth:`breaker`.
        """
        return self._run(self._acting(name, "disable"))

    async def adisable_breaker(self, name: str) -> BreakerInfo:
        """Disable the breaker *name* (see :meth:`disable_breaker`)."""
        return await self._arun(self._acting(name, "disable"))

    def _breakers(self) -> _Steps[Listing[BreakerInfo]]:
        keys, truncated = yield from self._scanning(f"{self.namespace}:breaker:")
        found = [
            BreakerInfo.of(each._snapshot(), shared=False)
            for each in live_breakers()
            if each._link is None
        ]
        for key in keys:
            stored = yield from self._asking("get_versioned", key)
            read = stored_state(stored)
            if read is not None:
                name, state = read
                state.tick(stored.time)  # an open time that has passed reads half-open
                found.append(BreakerInfo.of(state.stats(name, stored.time), shared=True))
        return Listing(
            sorted(found, key=lambda info: (info.name, info.shared)), truncated=truncated
        )

    def _breaker(self, name: str) -> _Steps[BreakerInfo]:
        live = live_breaker(name)
        if live is not None and live._link is None:
            return BreakerInfo.of(live._snapshot(), shared=False)
        stored = yield from self._asking("get_versioned", state_key(self.namespace, name))
        read = stored_state(stored)
        if read is None:
            raise self._no_breaker(name)
        state = read[1]
        state.tick(stored.time)
        return BreakerInfo.of(state.stats(name, stored.time), shared=True)

    def _acting(self, name: str, action: str) -> _Steps[BreakerInfo]:
        live = live_breaker(name)
        if live is not None and live._link is None:
            live._manual(action)
            return BreakerInfo.of(live._snapshot(), shared=False)
        backend, key = self.backend, state_key(self.namespace, name)
        acted = yield from acting_on_stored(backend, key, action)
        if acted is None:
            raise self._no_breaker(name)
        link = None if live is None else live._link
        if live is not None and link is not None and link.backend() is backend:
            with live._lock:  # this process's next call reads what was stored
                link.forget()
        now = DEFAULTS.clock.monotonic()
        for transition in acted.transitions:
            report_transition(name, transition._replace(time=now))
        return BreakerInfo.of(acted.state.stats(name, acted.time), shared=True)

    def _no_breaker(self, name: str) -> NotFoundError:
        backend, namespace = self.backend, self.namespace
        if isinstance(backend, MemoryBackend):  # what it keeps, this process made
            return NotFoundError(
                "breaker",
                name,
                f"was not made in this process (nor is one kept on {backend!r} in namespace "
                f"{namespace!r}): a MemoryBackend is in-process, so an Admin sees the breakers "
                "of the process it runs in only; ask one in the process that made the breaker",
            )
        return NotFoundError(
            "breaker",
            name,
            f"is not kept on {backend!r} in namespace {namespace!r}, where every process keeps "
            "its shared=True breakers, and this process made none of that name; a breaker that "
            "is not shared lives in the process that made it, where only an Admin of that "
            "process sees it",
        )

    # locks --------------------------------------------------------------------------------------

    def locks(self) -> Listing[LockInfo]:
        """Return every lock held now, by name and then fencing token.

        ``truncated`` when more keys than ``limit`` were under the locks' prefix.
        """
        return self._run(self._locks())

    async def alocks(self) -> Listing[LockInfo]:
        """Return every lock held now (see :meth:`locks`)."""
        return await self._arun(self._locks())

    def release_lock(self, name: str, token: int) -> LockInfo:
        """Release the lease of the lock *name* whose fencing token is *token*, held by anyone.

        For a holder that hangs or whose work is known to be dead: pass the token that
        :meth:`locks` showed, so that a lease taken since (a newer holder) is never released.
        The release is the token-checked one holders make themselves, reported as a
        :class:`~resilient.events.LockForceReleased` event. The holder learns that it lost
        the lock: at its next renewal (``renew=True``: within a third of its ``ttl``), or when
        it leaves its block, which raises :class:`~resilient.exceptions.LockLostError`.
        Returns the lease released.

        Raises:
            NotFoundError: When no lease of that lock with that token is held (none is, or a
                newer one is, which is left alone).
            TypeError: For a *token* that is not an int.
        """
        return self._run(self._releasing(name, token))

    async def arelease_lock(self, name: str, token: int) -> LockInfo:
        """Release a lease of the lock *name* (see :meth:`release_lock`)."""
        return await self._arun(self._releasing(name, token))

    def _locks(self) -> _Steps[Listing[LockInfo]]:
        keys, truncated = yield from self._scanning(f"{self.namespace}:lock:")
        peeked = (yield from self._asking("peek", keys)) if keys else []
        held = [
            LockInfo.of(each.held)
            for each in peeked
            if each.held is not None and each.held.fence is not None
        ]
        return Listing(
            sorted(held, key=lambda info: (info.name or "", info.token)), truncated=truncated
        )

    def _releasing(self, name: str, token: int) -> _Steps[LockInfo]:
        given: object = token  # typed for callers; checked as whatever arrived
        if isinstance(given, bool) or not isinstance(given, int):
            raise TypeError(
                f"token={token!r} must be the fencing token (an int) of the lease to release, "
                "as Admin.locks() shows it"
            )
        _check_inspector(self.backend)
        key = lock_key(self.namespace, name)
        (peeked,) = yield from self._asking("peek", [key])
        held = peeked.held
        if held is None or held.fence is None:
            raise NotFoundError("lock", name, f"is not held in namespace {self.namespace!r}")
        if held.fence != token:
            raise NotFoundError(
                "lock",
                name,
                f"is held with fencing token {held.fence}, not {token}: by another holder, "
                "which was left alone",
            )
        if not (yield from self._asking("unlock", key, held.token)):
            raise NotFoundError("lock", name, f"has no lease {token} any more: it ended meanwhile")
        info = attrs.evolve(LockInfo.of(held), name=name)
        if DEFAULTS.observers:
            event = LockForceReleased(
                policy=name, time=DEFAULTS.clock.monotonic(), token=token, holder=info.holder
            )
            emit(DEFAULTS, event)
        return info

    # idempotency records ---------------------------------------------------------------------

    def idempotency_records(
        self, state: RecordState | str | None = None, *, name: str | None = None
    ) -> Listing[RecordInfo]:
        """Return the records of idempotency keys, by function name; only of *state* if given.

        ``truncated`` when more keys than ``limit`` were under the records' prefix (of
        the function *name*, if given), whatever the state asked for.

        Args:
            state: A :class:`RecordState` or its value (``"completed"``, ``"failed"``,
                ``"in_progress"``, ``"unreadable"``); ``None`` for every state.
            name: Only the records of the idempotent function of this name.

        Raises:
            ValueError: For a state that is none of those.
        """
        return self._run(self._records(_state(state), name))

    async def aidempotency_records(
        self, state: RecordState | str | None = None, *, name: str | None = None
    ) -> Listing[RecordInfo]:
        """Return the records of idempotency keys (see :meth:`idempotency_records`)."""
        return await self._arun(self._records(_state(state), name))

    def purge_idempotency(self, state: RecordState | str, *, name: str | None = None) -> Purged:
        """Delete the records of *state* (of the function *name* only, if given); return how many.

        A key whose record is deleted executes again at its next call. This process's own
        copies (``local_ttl=``) are not deleted: each lasts its ``local_ttl`` at most.

        It purges what a listing finds, again and again while the listing was cut (by
        ``limit``) and found records to delete, so it deletes them all, however many.
        It stops with :attr:`Purged.truncated` set when a listing was cut and found none to
        delete: the records it looked at were all of other states (or functions), and
        those beyond them may hold some it could not reach.

        Raises:
            ValueError: For ``"in_progress"``: that is a running call's claim, which ends with
                the call, or after its ``lease_ttl`` if its process died; deleting it would
                let a duplicate run at the same time. Also for a state that is none.
        """
        return self._run(self._purging(_state(state), name))

    async def apurge_idempotency(
        self, state: RecordState | str, *, name: str | None = None
    ) -> Purged:
        """Delete the records of *state* (see :meth:`purge_idempotency`)."""
        return await self._arun(self._purging(_state(state), name))

    def _records(self, state: RecordState | None, name: str | None) -> _Steps[Listing[RecordInfo]]:
        found, truncated = yield from self._finding(state, name)
        ordered = sorted(found.values(), key=lambda info: (info.name, info.id))
        return Listing(ordered, truncated=truncated)

    def _finding(
        self, state: RecordState | None, name: str | None
    ) -> _Steps[tuple[dict[str, RecordInfo], bool]]:
        """Return the records of *state* (any) of the function *name* (any), by their keys.

        And whether the listing was cut at the limit.
        """
        namespace = self.namespace
        keys, truncated = yield from self._scanning(records_prefix(namespace, name))
        peeked = (yield from self._asking("peek", keys)) if keys else []
        found = {}
        for key, each in zip(keys, peeked, strict=True):
            made_of = record_of_key(namespace, key)
            held = each.held
            where = record_state(each.value, rejected=each.rejected, claimed=held is not None)
            if made_of is None or where is None or state not in (None, where):
                continue
            ttl = held.ttl if where is RecordState.IN_PROGRESS and held is not None else each.ttl
            found[key] = RecordInfo(name=made_of[0], id=made_of[1], state=where, ttl=ttl)
        return found, truncated

    def _purging(self, state: RecordState | None, name: str | None) -> _Steps[Purged]:
        if state is RecordState.IN_PROGRESS or state is None:
            raise ValueError(
                "purge_idempotency() deletes records that are stored: completed, failed or "
                "unreadable. A call in progress holds its key until it ends, or for its "
                "lease_ttl if its process died; deleting that claim would let a duplicate run"
            )
        purged = 0
        while True:  # each round deletes what it found, so that the next one looks further
            found, truncated = yield from self._finding(state, name)
            if found:
                purged += int((yield from self._asking("delete", list(found))))
            if not (found and truncated):
                return Purged(purged, truncated=truncated)

    def _scanning(self, prefix: str) -> _Steps[tuple[list[str], bool]]:
        """Return up to ``limit`` keys under *prefix*, and whether there were more.

        A scan returns as many keys as there are, up to its limit: asked for one key more
        than ours, it tells exactly whether a listing was cut. That key is dropped unread.
        """
        _check_inspector(self.backend)
        keys = yield from self._asking("scan", prefix, self.limit + 1)
        return keys[: self.limit], len(keys) > self.limit

    # caches -------------------------------------------------------------------------------------

    def cache_stats(self) -> list[CacheInfo]:
        """Return how each cached function of this process answered its calls, by name.

        In this process only, and nothing is asked of the backend (so there is no ``a``-twin):
        each process counts its own calls. Functions of one name are counted together. Hits
        are counted only while :func:`count_cache_hits` has turned counting on.
        """
        backend, namespace = self.backend, self.namespace
        counts: dict[str, dict[str, int]] = {}
        entries: dict[str, int] = {}
        for cache in cached_functions():
            mine = counts.setdefault(cache.name, dict.fromkeys(_CACHE_COUNTS, 0))
            for what, count in cache.tallies.snapshot().items():
                mine[what] += count
            kept = cache.kept(backend, namespace)
            if kept is not None:  # functions of one name share a region: count it once
                entries[cache.name] = max(kept, entries.get(cache.name, 0))
        counting = HIT_COUNTING.on
        return [
            CacheInfo(
                name=name,
                hits=mine["hits"] if counting else None,
                misses=mine["misses"],
                stale=mine["stale"],
                bypassed=mine["bypassed"],
                refreshed=mine["refreshed"],
                refresh_failed=mine["refresh_failed"],
                entries=entries.get(name),
            )
            for name, mine in sorted(counts.items())
        ]

    def purge_cache(self, *tags: str) -> int:
        """Drop every value stored under any of *tags*, by any cached function; how many.

        What :func:`resilient.invalidate_tags` does, on the admin's backend and namespace:
        the values go from the backend, and every process's local tier drops its copies
        (on a backend that broadcasts, as RedisBackend does).

        Raises:
            TypeError: For a tag that is not a string.
        """
        return self._run(self._purging_tags(tags))

    async def apurge_cache(self, *tags: str) -> int:
        """Drop every value stored under any of *tags* (see :meth:`purge_cache`)."""
        return await self._arun(self._purging_tags(tags))

    def _purging_tags(self, tags: tuple[str, ...]) -> _Steps[int]:
        for tag in tags:
            given: object = tag  # typed for callers; checked as whatever arrived
            if not isinstance(given, str):
                raise TypeError(f"tag {tag!r} is not a string: pass tags as given to tags=")
        return (yield from invalidating_tags(self.backend, self.namespace, tags))


def count_cache_hits(enabled: bool = True) -> None:
    """Count the hits of every cached function of this process from now on (or stop).

    Off by default: a memory hit costs a few hundred nanoseconds, and counting it costs a
    tenth more. Misses, stale answers, bypassed calls and refreshes are always counted. See
    :meth:`Admin.cache_stats`.

    Raises:
        TypeError: For *enabled* that is not a bool.
    """
    given: object = enabled  # typed for callers; checked as whatever arrived
    if not isinstance(given, bool):
        raise TypeError(f"enabled={enabled!r} must be True or False")
    count_hits(enabled)


_CACHE_COUNTS = ("hits", "misses", "stale", "bypassed", "refreshed", "refresh_failed")


def _state(state: RecordState | str | None) -> RecordState | None:
    """Return *state* as a RecordState (None stays None), or raise a helpful error."""
    if state is None or isinstance(state, RecordState):
        return state
    try:
        return RecordState(state)
    except ValueError:
        states = ", ".join(repr(each.value) for each in RecordState)
        raise ValueError(f"state={state!r} is none of {states}") from None


def _check_inspector(backend: object) -> None:
    if not isinstance(backend, Inspector):
        raise TypeError(
            f"{backend!r} cannot list what it keeps: resilient.admin needs a backend that "
            "implements resilient.typing.Inspector (scan and peek), such as RedisBackend or "
            "MemoryBackend"
        )
