# The small value types the backend protocols exchange. They are named tuples: a cache hit
# allocates one, so they must be as cheap as a tuple.
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Claim", "Fetched"]


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
    """

    value: object | None
    ttl: float | None
    claimed: bool


MISS = Fetched(None, None, claimed=False)
"""A read that found nothing and claimed nothing."""
