# The small value types the backend protocols exchange. They are named tuples: a cache hit
# allocates one, so they must be as cheap as a tuple.
from __future__ import annotations

from typing import NamedTuple

from .._core.ratelimit import Throttled

__all__ = ["Claim", "Fetched", "Held", "Locked", "Peeked", "Throttled", "Versioned"]


class Claim(NamedTuple):
    """A request to become the one caller that fills a key.

    Attributes:
        token: A random string (at least 128 bits) naming the claimant; only the same token
            releases the claim.
        ttl: Seconds the claim lasts unless released first (so a crashed claimant frees it).
        below: Also take the claim when a value is stored but has at most this many seconds
            left to live (the value is stale and due for a refresh). ``0.0`` claims only keys
            that hold no value.
    """

    token: str
    ttl: float
    below: float = 0.0


class Fetched(NamedTuple):
    """What a read found.

    Attributes:
        value: The stored value, or ``None`` when the key holds none (values are never ``None``).
        ttl: Seconds until the backend drops the value, or ``None`` when there is no value.
        claimed: Whether this read took the claim it asked for.
        holder: When the read asked for a claim and another token holds it, that token, if
            the backend tells (``None`` otherwise): a claimant can put what it needs others to
            know in its token (``@idempotent`` puts the fingerprint of the call there).
        rejected: Whether a value was stored but the codec rejected it (corrupt, tampered or
            foreign): ``value`` is then ``None`` and the claim, if asked for, was taken as if
            nothing were stored. A reader that must not act on a missing value as if none had
            ever been stored (``@idempotent``) fails instead.
    """

    value: object | None
    ttl: float | None
    claimed: bool
    holder: str | None = None
    rejected: bool = False


MISS = Fetched(None, None, claimed=False)
"""A read that found nothing and claimed nothing."""


class Versioned(NamedTuple):
    """A value kept under a version number, and the store's time when it was read or written.

    Attributes:
        value: The stored value, or ``None`` when none is stored (or it would not decode).
        version: How many writes the key has had since it was created; 0 when nothing is
            stored. Only :meth:`resilient.typing.Backend.set_versioned` advances it.
        time: The store's own clock in seconds, read in the same atomic step: the server's
            ``TIME`` on Redis, the configured clock's monotonic time in memory. Only the
            differences between readings of one store mean anything.
        stored: For a write, whether it was stored.
    """

    value: object | None
    version: int
    time: float
    stored: bool = False


class Locked(NamedTuple):
    """What an attempt to take a lock found.

    Attributes:
        token: The fencing token of the lease taken (an integer greater than every token
            handed out for the key before), or ``None`` when another owner holds the lock.
        ttl: Seconds the lease has left: this caller's when taken, the holder's otherwise.
        holder: When another owner holds the lock, the fencing token of its lease, if the
            backend tells (``None`` otherwise): it names the holding, so that a waiter can tell
            an outcome the holder left from an older one.
    """

    token: int | None
    ttl: float
    holder: int | None = None


class Held(NamedTuple):
    """Who holds the claim (or the lock) of a key, as a peek found it.

    Attributes:
        token: The holder's token: a claim's token, or a lock's owner.
        ttl: Seconds the claim has left.
        fence: For a lock, the fencing token of the lease; ``None`` for a claim that is no
            lock's.
    """

    token: str
    ttl: float
    fence: int | None = None


class Peeked(NamedTuple):
    """What a key holds, read without changing anything (see :class:`resilient.typing.Inspector`).

    Attributes:
        value: The stored value, or ``None`` when the key holds none (or it would not decode).
        ttl: Seconds until the value is dropped, or ``None`` when there is no value.
        held: Who holds the key's claim or lock, or ``None`` when nobody does.
        rejected: Whether a value was stored but the codec rejected it (corrupt, tampered or
            foreign); ``value`` is then ``None``.
    """

    value: object | None
    ttl: float | None
    held: Held | None = None
    rejected: bool = False


NOTHING = Peeked(None, None)
"""A key that holds nothing."""
