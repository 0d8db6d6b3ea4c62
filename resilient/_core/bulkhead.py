# The bulkhead policy, free of I/O: how many calls may run at once, how many may wait for a
# slot, and for how long.
#
# Rules:
# - A policy is validated when it is built, which is when the decorator is applied: counts are
#   whole numbers (never bools), durations float seconds or timedelta.
# - `timeout=` only bounds a wait, so it needs a queue to wait in (`max_waiting` above zero).
# - `backend=` is where shared slots live, so it needs `shared=True`, and must have the slot
#   primitives.
from __future__ import annotations

import attrs

from .primitives import needs_primitives
from .seconds import Seconds, positive_seconds

__all__ = ["BulkheadPolicy", "SLOT_PRIMITIVES"]

# What a shared bulkhead does on the backend: take a slot, renew and give back its lease, and
# wait for one to come free.
SLOT_PRIMITIVES = ("acquire_slot", "release_slot", "extend_slot", "wait_slot")


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} is not a whole number: give an int, e.g. {name}=4")
    if value < minimum:
        least = "zero" if minimum == 0 else str(minimum)
        raise ValueError(f"{name}={value!r} is too small: give {least} or more, e.g. {name}=4")
    return value


def _max_concurrent(value: int) -> int:
    return _whole("max_concurrent", value, 1)


def _max_waiting(value: int) -> int:
    return _whole("max_waiting", value, 0)


def _timeout(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("timeout", value)


def _lease_ttl(value: Seconds) -> float:
    return positive_seconds("lease_ttl", value)


@attrs.frozen(kw_only=True)
class BulkheadPolicy:
    """How many calls of a function run at once. Every field is also a keyword of ``bulkhead``.

    Attributes:
        max_concurrent: How many calls may run at once, across every thread and event loop of
            the process; 10 by default. Size it to what the dependency behind the function
            handles.
        max_waiting: How many calls may wait for a slot, first come first served, while
            ``max_concurrent`` run; a call beyond them is refused at once with
            :class:`~resilient.exceptions.BulkheadFullError`. 0 by default: no queue, a call
            finding every slot taken is refused at once.
        timeout: Seconds (or a ``timedelta``) a waiting call waits for a slot before it is
            refused; ``None`` (the default) waits as long as needed, up to the caller's
            :func:`resilient.deadline` when one is in force. Needs ``max_waiting`` above zero.
        name: The name events and errors report; by default the function's module and
            qualified name.
        shared: Bound the calls of every process using the backend together: at most
            ``max_concurrent`` run at once in the whole fleet. Each running call holds a slot
            on the backend as a lease, renewed while it runs, so the slot of a process that
            died comes free after ``lease_ttl``. ``max_waiting`` still counts the calls
            waiting in this process. Fails closed: when the backend cannot be reached, calls
            raise :class:`~resilient.exceptions.BackendUnavailableError` without running.
        backend: With ``shared``, where the slots live; by default the configured backend.
        lease_ttl: With ``shared``, seconds (or a ``timedelta``) a slot's lease lasts unless
            renewed (it is, every third of this, while the call runs): the longest a process
            that died keeps its slots. 30 by default.
    """

    max_concurrent: int = attrs.field(default=10, converter=_max_concurrent)
    max_waiting: int = attrs.field(default=0, converter=_max_waiting)
    timeout: float | None = attrs.field(default=None, converter=_timeout)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    shared: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    backend: object = attrs.field(default=None, validator=needs_primitives(*SLOT_PRIMITIVES))
    lease_ttl: float = attrs.field(default=30.0, converter=_lease_ttl)

    def __attrs_post_init__(self) -> None:
        if self.backend is not None and not self.shared:
            raise ValueError(
                "backend= is where shared slots live: add shared=True to bound the calls of "
                "every process together, or leave backend= out for a bound of this process"
            )
        if self.timeout is not None and self.max_waiting == 0:
            raise ValueError(
                f"timeout={self.timeout:g} bounds the wait for a slot, but max_waiting=0 lets "
                "no call wait: add max_waiting= (e.g. max_waiting=100), or leave timeout= out"
            )
