# The single-flight policy, free of I/O: which calls are one flight, how many may fly, and
# where a shared flight lives.
from __future__ import annotations

from collections.abc import Callable

import attrs

from .cache import call_key, positive_size
from .primitives import needs_primitives
from .seconds import Seconds, positive_seconds

__all__ = ["DedupePolicy"]

# What a shared flight does on the backend: take and renew its lease, store its outcome (which
# releases the lease), and wait for and read it.
_PRIMITIVES = ("lock", "unlock", "extend", "wait_released", "get", "put")


def _lease_ttl(value: Seconds) -> float:
    return positive_seconds("lease_ttl", value)


@attrs.frozen(kw_only=True)
class DedupePolicy:
    """Which concurrent calls share one execution. Every field is also a keyword of ``deduped``.

    Attributes:
        key: What identifies a call: a template over the parameters (``"{currency}"``) or a
            callable taking the function's arguments; by default all of them, as for
            :func:`resilient.cached` (``self`` left out, so that instances share flights).
        max_flights: How many keys may be in flight at once in this process; a call beyond
            that runs on its own, and a ``dedupe.bypassed`` event says so.
        name: The name events report; by default the function's module and qualified name.
        shared: Share flights with every process using the backend: one call in the fleet
            runs, the others wait for its outcome, stored through the backend's codec.
        backend: With ``shared``, the backend; by default the configured one.
        lease_ttl: With ``shared``, seconds the running call's lease lasts unless renewed
            (it is, every third of this, while the call runs): how long followers wait for a
            leader that died before one of them takes over. The outcome stays stored as long,
            for followers to read.
    """

    key: str | Callable[..., object] | None = attrs.field(default=None, converter=call_key)
    max_flights: int = attrs.field(default=10_000, converter=positive_size)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    shared: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    backend: object = attrs.field(default=None, validator=needs_primitives(*_PRIMITIVES))
    lease_ttl: float = attrs.field(default=30.0, converter=_lease_ttl)

    def __attrs_post_init__(self) -> None:
        if self.backend is not None and not self.shared:
            raise ValueError(
                "backend= is where shared flights live: add shared=True, or leave backend= "
                "out for flights of this process alone"
            )
