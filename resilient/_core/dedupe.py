# The single-flight policy, free of I/O: which calls are one flight, and how many may fly.
from __future__ import annotations

from collections.abc import Callable

import attrs

from .cache import call_key, positive_size

__all__ = ["DedupePolicy"]


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
    """

    key: str | Callable[..., object] | None = attrs.field(default=None, converter=call_key)
    max_flights: int = attrs.field(default=10_000, converter=positive_size)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
