"""Public protocols and type aliases: the extension points of `resilient`.

Everything here is stable API. Implement these protocols to plug your own clock or observer
into the library; annotate with the aliases to keep your own code strictly typed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from .events import Event

if TYPE_CHECKING:
    from .backends import Claim, Fetched, Locked, Peeked, Throttled, Versioned

__all__ = [
    "AsyncBackend",
    "Backend",
    "Broadcaster",
    "Clock",
    "ExceptionPredicate",
    "ExceptionTypes",
    "Extender",
    "Inspector",
    "Observer",
    "ResultPredicate",
    "Subscription",
    "Wait",
]


@runtime_checkable
class Clock(Protocol):
    """Where every capability reads time and the drivers sleep.

    The library never calls :func:`time.monotonic` or :func:`time.sleep` directly; it asks the
    configured clock, so tests can swap in :class:`resilient.testing.FakeClock`.
    """

    def monotonic(self) -> float:
        """Return seconds on a monotonic clock, for measuring intervals and deadlines."""

    def time(self) -> float:
        """Return wall-clock seconds since the epoch, for absolute dates such as HTTP-dates."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for *seconds* (never called with zero)."""

    def asleep(self, seconds: float) -> Awaitable[None]:
        """Suspend the calling task for *seconds*; cancellation must interrupt it at once."""


Observer: TypeAlias = Callable[[Event], object]
"""Anything callable with one :class:`resilient.events.Event`; the return value is ignored.

An observer must be quick and must not block: it runs inline, in the thread or task that made
the decision. An exception it raises is logged once and swallowed (raised in testing mode).
"""

ExceptionTypes: TypeAlias = type[Exception] | tuple[type[Exception], ...]
"""One exception class, or a tuple of them, as given to ``on=``."""

ExceptionPredicate: TypeAlias = Callable[[Exception], bool]
"""A function deciding from the exception whether it should be handled, as given to ``on=``."""

ResultPredicate: TypeAlias = Callable[[object], bool]
"""A function deciding from a returned value whether the call should be retried."""


@runtime_checkable
class Wait(Protocol):
    """A wait strategy: how long to wait before the next attempt.

    The built-in strategies live in :mod:`resilient.wait`; any object with this call signature
    works too.
    """

    def __call__(self, attempt: int, previous: float, /) -> float:
        """Return the seconds to wait after failed attempt number *attempt* (1-based).

        *previous* is the wait chosen after the attempt before it (0.0 after the first).
        """


@runtime_checkable
class Backend(Protocol):
    """Storage primitives for sync code: what a backend must do for `resilient` to use it.

    Every method is atomic and, on a network store, one round trip. Keys are strings that
    already carry their namespace; a part in braces (``"ns:cache:f:{3fa9}"``) is a hash tag, and
    every key an operation derives from a key (its claim, say) must keep that part so that a
    sharded store keeps them together. Values are never ``None``: ``None`` means "absent".

    A backend that stores values outside the process must encode them safely (see
    :class:`resilient.backends.Codec`) and must treat a value it cannot decode as absent. Run
    the contract suite (:mod:`resilient.testing.contract`) against your own backend to check
    it keeps every promise written here.
    """

    def get(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key*; with *claim*, also take the key's claim if it is free and due.

        The claim is taken when no value is stored, or when one is stored with at most
        ``claim.below`` seconds left, and no other token holds the claim.
        """

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
        """Store *value* for *ttl* seconds and record *key* under each of *indexes*.

        With *token*, also release the claim that token holds on *key* and wake every caller
        waiting for it, in the same atomic step. With *absent*, store it only if no value is
        stored at *key* (the claim is released either way). Return whether it was stored.
        """

    def release(self, key: str, token: str) -> None:
        """Release the claim *token* holds on *key*, if it still does, and wake its waiters."""

    def wait_released(self, key: str, timeout: float) -> None:
        """Block until no claim is held on *key*, or *timeout* seconds have passed.

        Waiters are woken by the release, never by polling in a tight loop.
        """

    def delete(self, keys: Sequence[str]) -> int:
        """Delete the values stored at *keys*; return how many there were."""

    def purge(self, indexes: Sequence[str]) -> int:
        """Delete every value recorded under any of *indexes*; return how many there were.

        An index only ever lists keys whose values may still be alive: entries leave it when
        they expire, so an index stays as small as the values it names.
        """

    def get_versioned(self, key: str) -> Versioned:
        """Read the value and version stored at *key* by :meth:`set_versioned`, with the time."""

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Store *value* at *key* as version ``version + 1``, if *version* is stored now.

        The compare-and-set that state transitions are made with: of all writers that read
        one version, exactly one stores the next. The key lives *ttl* seconds after each
        write. Returns the stored value and version with ``stored=True``, or, when another
        writer came first, what is stored now with ``stored=False``. *writer* (128 random
        bits, new for every write) makes a write safe to send twice: a write found already
        stored by the same *writer* reports ``stored=True``.
        """

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Throttled:
        """Decide one call of the rate limit *key*: one call every *interval* seconds.

        Up to *burst* calls may go at once after a quiet spell. A call over the limit may
        reserve the next token if it comes within *max_wait* seconds: it is admitted, told
        how long to wait, and counted at once. The decision reads and updates the key in one
        atomic step, on the store's own clock, and the key expires when its bucket is full
        again. The arithmetic is the generic cell rate algorithm (GCRA), as the rate-limit
        page of the docs describes it.
        """

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take the lock *key* for *owner* (128 random bits) for *ttl* seconds, if it is free.

        Taken, it hands out a fencing token greater than every one handed out for *key*
        before. If *owner* holds it already (the same request sent twice), it says so with the
        token it holds. The lock is the claim of *key*: :meth:`wait_released` waits for it.
        """

    def unlock(self, key: str, owner: str) -> bool:
        """Release *owner*'s lock on *key* and wake its waiters; False if *owner* holds none.

        False tells the holder its lease was lost, so a store whose client re-sends a command
        after a connection error should answer True to a re-sent release whose first run
        released (the Redis backend keeps a receipt of each release for that).
        """

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s lock on *key* last *ttl* seconds from now; False if it holds none."""

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take one of the *limit* slots of *key* for *owner* (128 random bits), for *ttl* s.

        The slots of a key are a counting semaphore whose places are leases: leases that ran
        out are dropped first, then *owner* is admitted if fewer than *limit* live leases are
        held. An owner holding a slot already (the same request sent twice) is admitted
        again, still holding one slot, its lease lasting *ttl* seconds from now. Returns
        whether *owner* holds a slot.
        """

    def release_slot(self, key: str, owner: str) -> bool:
        """Give back *owner*'s slot of *key* and wake its waiters; False if it holds none.

        As for :meth:`unlock`, a re-sent release whose first run gave the slot back should
        answer True.
        """

    def extend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s slot of *key* last *ttl* seconds from now; False if it holds none."""

    def wait_slot(self, key: str, limit: int, timeout: float) -> None:
        """Block until fewer than *limit* slots of *key* are held, or *timeout* seconds pass.

        Returns at once when a slot is free; else when a slot is released, the first lease
        held runs out, or *timeout* passes: never by polling in a tight loop.
        """


@runtime_checkable
class AsyncBackend(Protocol):
    """The same primitives as :class:`Backend` for asyncio code, each a coroutine.

    The methods are those of :class:`Backend` with an ``a`` in front (``aget``, ``aput``,
    ``arelease``, ``await_released``, ``adelete``, ``apurge``, ``aget_versioned``,
    ``aset_versioned``, ``athrottle``, ``alock``, ``aunlock``, ``aextend``, ``aacquire_slot``,
    ``arelease_slot``, ``aextend_slot``, ``await_slot``), so that one
    object can serve sync and async callers, as :class:`resilient.backends.MemoryBackend` and
    :class:`resilient.backends.RedisBackend` do.
    """

    async def aget(self, key: str, *, claim: Claim | None = None) -> Fetched:
        """Read *key* (see :meth:`Backend.get`)."""

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
        """Store *value* (see :meth:`Backend.put`)."""

    async def arelease(self, key: str, token: str) -> None:
        """Release a claim (see :meth:`Backend.release`)."""

    async def await_released(self, key: str, timeout: float) -> None:  # noqa: ASYNC109 - see above
        """Wait until no claim is held on *key* (see :meth:`Backend.wait_released`)."""

    async def adelete(self, keys: Sequence[str]) -> int:
        """Delete values (see :meth:`Backend.delete`)."""

    async def apurge(self, indexes: Sequence[str]) -> int:
        """Delete every value under *indexes* (see :meth:`Backend.purge`)."""

    async def aget_versioned(self, key: str) -> Versioned:
        """Read a versioned value (see :meth:`Backend.get_versioned`)."""

    async def aset_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        """Compare and set a versioned value (see :meth:`Backend.set_versioned`)."""

    async def athrottle(
        self, key: str, interval: float, burst: int, max_wait: float = 0.0
    ) -> Throttled:
        """Decide one call of a rate limit (see :meth:`Backend.throttle`)."""

    async def alock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take a lock (see :meth:`Backend.lock`)."""

    async def aunlock(self, key: str, owner: str) -> bool:
        """Release a lock (see :meth:`Backend.unlock`)."""

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a lock (see :meth:`Backend.extend`)."""

    async def aacquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        """Take a slot (see :meth:`Backend.acquire_slot`)."""

    async def arelease_slot(self, key: str, owner: str) -> bool:
        """Give back a slot (see :meth:`Backend.release_slot`)."""

    async def aextend_slot(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a slot (see :meth:`Backend.extend_slot`)."""

    async def await_slot(self, key: str, limit: int, timeout: float) -> None:  # noqa: ASYNC109 - see above
        """Wait until a slot of *key* may be free (see :meth:`Backend.wait_slot`)."""


@runtime_checkable
class Subscription(Protocol):
    """A listener's hold on a channel; see :meth:`Broadcaster.subscribe`."""

    @property
    def live(self) -> bool:
        """Whether every message published on the channel from now on will be delivered.

        False until the subscription is confirmed, and from the moment it may have missed a
        message (a lost connection) until it is confirmed again; the listener is called with
        ``None`` in between.
        """

    def close(self) -> None:
        """Stop delivering messages to the listener; closing twice does nothing."""


@runtime_checkable
class Broadcaster(Protocol):
    """Messages to every process using a shared backend: what keeps local copies coherent.

    Optional: a backend implements it beside :class:`Backend` when it can reach every process
    that uses it. ``@cached(local_ttl=...)`` needs it, to tell every process's in-memory tier
    of an invalidation. :class:`resilient.backends.RedisBackend` implements it with Redis
    pub/sub.
    """

    def publish(self, channel: str, message: str) -> None:
        """Deliver *message* to every live subscription of *channel*, in every process."""

    async def apublish(self, channel: str, message: str) -> None:
        """Deliver *message* (see :meth:`publish`), from async code."""

    def subscribe(self, channel: str, listener: Callable[[str | None], object]) -> Subscription:
        """Call *listener* with each message published on *channel* from now on.

        The listener runs in a background thread the backend owns, and must be quick. It is
        called with ``None`` whenever messages may have been missed (the connection was lost
        or the subscription is being made again), so that it can drop what it derived from
        them. Nothing connects before the first subscription.
        """


@runtime_checkable
class Inspector(Protocol):
    """Reading what a backend holds without changing it: what operators' tools need.

    Optional: a backend implements it beside :class:`Backend` so that :mod:`resilient.admin`
    can list and act on what the library stored there (breakers, locks, idempotency
    records). :class:`resilient.backends.MemoryBackend` and
    :class:`resilient.backends.RedisBackend` implement it. Neither method may block the
    store for long: a scan goes in bounded steps (``SCAN`` with ``COUNT`` on Redis, never
    ``KEYS``).
    """

    def scan(self, prefix: str, limit: int) -> list[str]:
        """Return up to *limit* keys that start with *prefix* and hold something, each once.

        A key holds something when it has a value (:meth:`Backend.put`), a versioned value
        (:meth:`Backend.set_versioned`), a claim or lock, or slots. The keys are those the
        :class:`Backend` methods were given, whatever the store keeps beside them (Redis
        keeps a lock in several keys, which the scan lists as one). A key listed may hold
        nothing by the time it is read; a store that keeps other structures under keys of
        their own (Redis's indexes) may list those too.

        Fewer than *limit* keys only when there are no more: :class:`resilient.admin.Admin`
        asks for one key more than it reads, to tell that a listing was cut.
        """

    async def ascan(self, prefix: str, limit: int) -> list[str]:
        """Return keys under *prefix* (see :meth:`scan`), from async code."""

    def peek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds: its value and who holds its claim or lock.

        One :class:`resilient.backends.Peeked` per key, in order. Nothing changes: no claim
        is taken, no expiry or recency is touched. A value the codec rejects is reported as
        ``rejected``, never raised.
        """

    async def apeek(self, keys: Sequence[str]) -> list[Peeked]:
        """Return what each of *keys* holds (see :meth:`peek`), from async code."""


@runtime_checkable
class Extender(Protocol):
    """Extending many leases at once: what keeps many held leases alive behind a slow link.

    Optional: a backend implements it beside :class:`Backend` so that the lease renewer
    (``renew=True`` locks, shared ``@deduped`` flights, ``@idempotent`` claims) renews every
    lease due in one round with one call, one round trip on a network store, rather than one
    :meth:`Backend.extend` each. Without it, the renewer extends them one after another.
    :class:`resilient.backends.MemoryBackend` and :class:`resilient.backends.RedisBackend`
    implement it.
    """

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        """Extend each ``(key, owner, ttl)`` of *leases* as :meth:`Backend.extend` would.

        Return one outcome per lease, in order: what :meth:`Backend.extend` returns for it,
        or the exception that failed that lease alone (the others' outcomes stand). The
        leases may live anywhere in a sharded store. An error that fails them all (the store
        cannot be reached) is raised.
        """

    async def aextend_many(
        self, leases: Sequence[tuple[str, str, float]]
    ) -> list[bool | Exception]:
        """Extend each of *leases* (see :meth:`extend_many`), from async code."""
