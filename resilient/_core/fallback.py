# The fallback policy, free of I/O: which exceptions a fallback answers, and with what.
#
# Rules:
# - A policy is validated when it is built, which is when the decorator is applied: `on=` as for
#   retry (exception types or a predicate, never a BaseException that is not an Exception), and
#   exactly one answer, `value=` or `handler=`.
# - `value=None` is an answer like any other, so "not given" is the sentinel UNSET.
# - Only `Exception` subclasses are ever answered; cancellation, KeyboardInterrupt, SystemExit and
#   GeneratorExit pass straight through the drivers.
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

import attrs

from ..typing import ExceptionPredicate, ExceptionTypes
from .matching import Handling, Matching, convert_on, matching_field

__all__ = ["UNSET", "FallbackPolicy"]


class _Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""The ``value`` of a policy given none (it has a ``handler``): ``None`` is a value to return."""

_ANSWERING = Handling(does="answers", done="answered by a fallback", purpose="the fallback answers")


def _convert_on(
    given: ExceptionTypes | ExceptionPredicate | list[type[Exception]],
) -> ExceptionTypes | ExceptionPredicate:
    return convert_on(given, _ANSWERING)


def _check_handler(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(
            f"handler={value!r} must be a callable taking the exception, e.g. "
            f"handler=lambda exc: []; to return {value!r} itself, write value={value!r}"
        )


@attrs.frozen(kw_only=True)
class FallbackPolicy:
    """What a failing call returns instead. Every field is also a keyword of ``fallback``.

    Give exactly one of *value* and *handler*.

    Attributes:
        on: The exception types to answer, or a predicate taking the exception. Required:
            answering every exception hides bugs. Any other exception propagates unchanged.
        value: The value returned instead of raising; ``None`` is a value too.
        handler: A callable taking the exception and returning the value to return instead.
            For an async function it may be async: what it returns is awaited if awaitable.
            An exception it raises propagates, with the one it answered as its
            ``__context__``.
        name: The name events report; by default the decorated function's module and
            qualified name.
    """

    on: ExceptionTypes | ExceptionPredicate = attrs.field(converter=_convert_on)
    value: object = UNSET
    handler: Callable[[Exception], object] | None = attrs.field(
        default=None, validator=_check_handler
    )
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )

    _matching: Matching = matching_field()

    def __attrs_post_init__(self) -> None:
        if self.handler is None and self.value is UNSET:
            raise TypeError(
                "a fallback needs value= or handler=: what the call returns instead, e.g. "
                "value=None, or handler=lambda exc: ... to compute it from the exception"
            )
        if self.handler is not None and self.value is not UNSET:
            raise TypeError(
                f"give value= or handler=, not both: value={self.value!r} is returned as it "
                "is, handler= is called with the exception and its result returned"
            )

    def matches(self, exc: Exception) -> bool:
        """Return whether *exc* is one this policy answers."""
        return self._matching.matches(exc)
