# `@deduped`: concurrent calls with the same key share one execution (single flight).
#
# Rules:
# - One flight per key in this process (`Flights`): the first call leads and runs the
#   function; every call arriving while it runs follows and gets the leader's value, or the
#   very exception it raised. Followers are woken by the flight's Signal, never by polling.
# - A leader ended by a BaseException that is not an Exception (cancellation, an interrupt)
#   abandons the flight: its followers wake and try again, one of them leading. A follower
#   cancelled while it waits leaves the flight, which goes on for the others.
# - A call is written once, as a procedure of effects (`CALL`, `Join`), which `run_sync` and
#   `run_async` perform: threads wait on the Signal, tasks await it in their own loop, and no
#   task is created.
# - At most `max_flights` keys fly at once; a call beyond that runs on its own.
from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import attrs

from ._config import DEFAULTS
from ._core.dedupe import DedupePolicy
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import CALL, Join, Procedure, emit, run_async, run_sync
from ._flight import Flights
from ._keys import CallKeys
from .events import DedupeBypassed, DedupeJoined, DedupeLed

__all__ = ["DedupeOptions", "deduped"]

P = ParamSpec("P")
R = TypeVar("R")


class DedupeOptions(TypedDict, total=False):
    """The keyword arguments of :func:`deduped`: the fields of :class:`DedupePolicy`."""

    key: str | Callable[..., object] | None
    max_flights: int
    name: str | None


class _Deduping:
    """One policy applied to one function: its flights and its sync and async call steps."""

    __slots__ = ("flights", "inner", "keys", "max_flights", "name")

    def __init__(self, policy: DedupePolicy, keys: CallKeys, name: str, inner: Call) -> None:
        self.flights = Flights()
        self.keys = keys
        self.name = name
        self.inner = inner
        self.max_flights = policy.max_flights

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        if len(self.flights) >= self.max_flights:
            self._bypassed()
            return call()
        return run_sync(self._flight(self.keys.local(instance, args, kwargs)), call=call)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        if len(self.flights) >= self.max_flights:
            self._bypassed()
            return await call()
        return await run_async(self._flight(self.keys.local(instance, args, kwargs)), call=call)

    def _flight(self, key: Hashable) -> Procedure:
        """Lead the flight of *key*, or follow it and take its outcome."""
        while True:
            flight, leads = self.flights.join(key)
            if leads:
                start = DEFAULTS.clock.monotonic()
                try:
                    value = yield CALL
                except BaseException as error:
                    self.flights.land(key, flight, error=error)
                    raise
                self.flights.land(key, flight, value=value)
                if DEFAULTS.observers:
                    now = DEFAULTS.clock.monotonic()
                    emit(DEFAULTS, DedupeLed(policy=self.name, time=now, elapsed=now - start))
                return value
            start = DEFAULTS.clock.monotonic()
            yield Join(flight.landing)
            if flight.abandoned:  # the leader was cancelled or interrupted: try again
                continue
            if DEFAULTS.observers:
                now = DEFAULTS.clock.monotonic()
                emit(DEFAULTS, DedupeJoined(policy=self.name, time=now, waited=now - start))
            if flight.error is not None:
                raise flight.error
            return flight.value

    def _bypassed(self) -> None:
        if DEFAULTS.observers:
            emit(
                DEFAULTS,
                DedupeBypassed(
                    policy=self.name, time=DEFAULTS.clock.monotonic(), in_flight=len(self.flights)
                ),
            )


@attrs.frozen
class _DedupeLayer:
    policy: DedupePolicy

    def build(self, inner: Call, target: Target) -> Call:
        keys = CallKeys(target.function, target.name, self.policy.key)
        deduping = _Deduping(self.policy, keys, self.policy.name or target.name, inner)
        return deduping.call_async if target.is_async else deduping.call_sync


def deduped(policy: DedupePolicy | None = None, /, **options: Unpack[DedupeOptions]) -> Decorator:
    """Make concurrent calls with the same arguments share one execution of the function.

    The first call runs the function; calls with the same key that arrive while it runs wait
    for it and get its value, or the very exception it raised. Works on sync and async
    functions and methods, with threads and event loops; in this process.

    Raises:
        TypeError: At decoration time, for an unknown keyword, a ``key=`` that is neither a
            template nor a callable, or a generator function.
        ValueError: For ``max_flights`` below 1, or a ``key=`` template naming no parameter.

    Example:
        >>> from resilient import deduped
        >>> @deduped()
        ... def rates(currency: str) -> dict[str, float]:
        ...     return {currency: 1.08}
        >>> rates("USD")
        {'USD': 1.08}
    """
    resolved = resolve_policy(
        "deduped", DedupePolicy, policy, options, "@deduped(key='{currency}')"
    )
    return Decorator(_DedupeLayer(resolved), "@deduped")
