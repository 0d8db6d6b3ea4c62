# Which exceptions a policy handles: `on=` as exception types or a predicate, checked once when
# the policy is built. Retry and the breaker both take it; each names what handling means to it
# (retried, counted as a failure), so the errors read right for the decorator the user wrote.
from __future__ import annotations

from typing import Any, NamedTuple, cast

import attrs

from ..typing import ExceptionPredicate, ExceptionTypes

__all__ = [
    "Handling",
    "Matching",
    "convert_on",
    "exception_types",
    "matching_field",
    "matching_of",
]


class Matching(NamedTuple):
    """``on=`` split once into exception types or a predicate, so each check needs no dispatch."""

    types: tuple[type[Exception], ...] | None
    predicate: ExceptionPredicate | None

    def matches(self, exc: Exception) -> bool:
        """Return whether *exc* is one ``on=`` names."""
        if self.types is not None:
            return isinstance(exc, self.types)
        assert self.predicate is not None  # on= is either types or a predicate
        return bool(self.predicate(exc))


def matching_of(on: ExceptionTypes | ExceptionPredicate) -> Matching:
    """Return the Matching of a converted ``on=`` (see :func:`convert_on`)."""
    if isinstance(on, tuple):
        return Matching(on, None)
    if isinstance(on, type):
        return Matching((on,), None)
    return Matching(None, on)


def matching_field() -> Any:
    """An attrs field holding a policy's ``on=`` split once (see :class:`Matching`).

    Declared on a policy class as ``_matching: Matching = matching_field()``, after its
    ``on`` field; it takes no argument and is left out of the policy's repr and equality.
    """
    return attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda self: matching_of(self.on), takes_self=True),
    )


class Handling(NamedTuple):
    """How a capability words what it does with the exceptions `on=` names."""

    does: str  # "retries"
    done: str  # "retried"
    purpose: str  # "to retry"


def _refuse_non_exception(name: str, item: object, handling: Handling) -> None:
    if isinstance(item, BaseException):
        raise TypeError(
            f"{name}= got the exception instance {item!r}; pass its class instead: "
            f"{name}={type(item).__name__}"
        )
    if isinstance(item, type) and issubclass(item, BaseException):
        if issubclass(item, Exception):
            return
        raise TypeError(
            f"{name}={item.__name__} can never be {handling.done}: cancellation, "
            "KeyboardInterrupt, SystemExit and GeneratorExit always propagate. Name Exception "
            "subclasses."
        )
    if isinstance(item, type):
        raise TypeError(
            f"{name}={item.__name__} is not an exception class: pass exception types, e.g. "
            f"{name}=(ConnectionError, TimeoutError)"
        )


def convert_on(
    given: ExceptionTypes | ExceptionPredicate | list[type[Exception]], handling: Handling
) -> ExceptionTypes | ExceptionPredicate:
    """Return ``on=`` as one exception type, a tuple of them, or a predicate, or raise.

    A list becomes a tuple. Instances, non-exception classes, BaseExceptions that are not
    Exceptions, an empty tuple, and anything neither types nor callable raise at once.
    """
    on: object = tuple(given) if isinstance(given, list) else given
    if isinstance(on, tuple) and not on:
        raise ValueError(
            f"on=() {handling.does} nothing: name the exception types {handling.purpose}"
        )
    for item in on if isinstance(on, tuple) else (on,):
        _refuse_non_exception("on", item, handling)
        if isinstance(item, type):
            continue
        if isinstance(on, tuple) or not callable(item):
            raise TypeError(
                f"on={on!r} is neither exception types nor a predicate: pass e.g. "
                "on=ConnectionError or on=lambda exc: isinstance(exc, OSError)"
            )
    return cast("ExceptionTypes | ExceptionPredicate", on)


def exception_types(
    name: str, given: ExceptionTypes | list[type[Exception]], handling: Handling
) -> tuple[type[Exception], ...]:
    """Return *given* (one exception type or several) as a tuple, or raise; ``()`` is allowed."""
    types = tuple(given) if isinstance(given, (list, tuple)) else (given,)
    for item in types:
        _refuse_non_exception(name, item, handling)
        if not isinstance(item, type):
            raise TypeError(
                f"{name}={given!r} must be exception types, e.g. {name}=(ValueError, KeyError)"
            )
    return types
