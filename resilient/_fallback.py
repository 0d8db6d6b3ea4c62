# `@fallback`: a value (or a handler's answer) instead of an exception, around the policy in
# _core/fallback.py.
#
# Rules:
# - The success path is one `try` around the step inside (or the function itself when there
#   is none): no clock read, no allocation; everything else happens once an exception arrives.
# - Only `Exception` is caught, so cancellation, KeyboardInterrupt and SystemExit pass. An
#   exception `on=` does not name is re-raised with a bare `raise`: the very object, its
#   traceback untouched. An `on=` predicate that raises is a bug in it: its exception is raised
#   from the one it was judging, as retry does.
# - The handler runs inside the `except` block, so an exception it raises propagates with the
#   answered one as its `__context__` (a handler may say `raise ... from` itself); a handler
#   re-raising the exception it was given propagates it as it was.
# - `fallback.used` is reported before the handler runs: the decision is made then.
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Required, TypedDict, Unpack, overload

import attrs

from ._config import DEFAULTS
from ._core.fallback import UNSET, FallbackPolicy
from ._decorate import Call, Decorator, Target, call_function, resolve_policy
from ._drive import emit, type_name
from .events import FallbackUsed
from .typing import ExceptionPredicate, ExceptionTypes

__all__ = [
    "FallbackHandlerArguments",
    "FallbackOptions",
    "FallbackValueArguments",
    "fallback",
]


class FallbackOptions(TypedDict, total=False):
    """The keyword arguments of :func:`fallback` with a policy: the fields of FallbackPolicy.

    Each overrides the policy's field; ``value=`` or ``handler=`` replaces the policy's answer.
    """

    on: ExceptionTypes | ExceptionPredicate
    value: object
    handler: Callable[[Exception], object] | None
    name: str | None


class FallbackValueArguments(TypedDict, total=False):
    """The keyword arguments of :func:`fallback` answering with a value."""

    on: Required[ExceptionTypes | ExceptionPredicate]
    value: Required[object]
    name: str | None


class FallbackHandlerArguments(TypedDict, total=False):
    """The keyword arguments of :func:`fallback` answering with a handler's result."""

    on: Required[ExceptionTypes | ExceptionPredicate]
    handler: Required[Callable[[Exception], object]]
    name: str | None


class _Fallback:
    """The policy applied to one decorated function: its sync and async call steps."""

    __slots__ = ("handler", "name", "nested", "policy", "types", "value")

    def __init__(self, policy: FallbackPolicy, name: str, inner: Call) -> None:
        self.policy = policy
        self.name = name
        # None when the step inside is the function itself, which is then called directly
        self.nested = None if inner is call_function else inner
        self.types = policy._matching.types  # the common case, checked without matches()
        self.handler = policy.handler
        self.value = policy.value

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        nested = self.nested
        try:
            if nested is None:
                return wrapped(*args, **kwargs)
            return nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if not self._answers(exc):
                raise
            handler = self.handler
            return self.value if handler is None else handler(exc)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        nested = self.nested
        try:
            if nested is None:
                return await wrapped(*args, **kwargs)
            return await nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if not self._answers(exc):
                raise
            handler = self.handler
            if handler is None:
                return self.value
            answer = handler(exc)
            return (await answer) if inspect.isawaitable(answer) else answer

    def _answers(self, exc: Exception) -> bool:
        """Decide whether the fallback answers *exc*, and report it when it does."""
        types = self.types
        if types is not None:
            answers = isinstance(exc, types)
        else:
            try:
                answers = self.policy.matches(exc)
            except Exception as hook_error:  # from on=: show what it was judging
                raise hook_error from exc
        if answers and DEFAULTS.observers:
            event = FallbackUsed(
                policy=self.name, time=DEFAULTS.clock.monotonic(), error_type=type_name(exc)
            )
            emit(DEFAULTS, event)
        return answers


@attrs.frozen
class _FallbackLayer:
    policy: FallbackPolicy

    def build(self, inner: Call, target: Target) -> Call:
        handler = self.policy.handler
        if not target.is_async and inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"@fallback on the sync function {target.name}() cannot await the async "
                f"handler {getattr(handler, '__qualname__', handler)!r}: give it a sync handler"
            )
        step = _Fallback(self.policy, self.policy.name or target.name, inner)
        return step.call_async if target.is_async else step.call_sync


@overload
def fallback(policy: FallbackPolicy, /, **options: Unpack[FallbackOptions]) -> Decorator: ...
@overload
def fallback(**options: Unpack[FallbackValueArguments]) -> Decorator: ...
@overload
def fallback(**options: Unpack[FallbackHandlerArguments]) -> Decorator: ...
def fallback(policy: FallbackPolicy | None = None, /, **options: Any) -> Decorator:
    """Return a value instead of raising when the decorated function raises one of ``on=``.

    Takes a :class:`FallbackPolicy`, or its fields as keyword arguments (or both: the keywords
    override the policy's fields). ``value=`` is returned as it is; ``handler=`` is called with
    the exception and its result returned (awaited first, for an async function, when it is
    awaitable). Any other exception propagates unchanged, and cancellation, KeyboardInterrupt
    and SystemExit are never answered. Put it outermost, over ``@retry`` and breakers, so that
    it answers what they give up on, :class:`~resilient.exceptions.CircuitOpenError` included.

    Raises:
        TypeError: At decoration time, for a missing ``on=``, neither or both of ``value=``
            and ``handler=``, an exception instance or a BaseException that is not an
            Exception in ``on=``, an async handler for a sync function, or a generator
            function.
        ValueError: At decoration time, for ``on=()``, which names nothing to answer.

    Example:
        >>> from resilient import fallback
        >>> @fallback(on=ConnectionError, value=[])
        ... def recommendations(user_id: int) -> list[str]:
        ...     raise ConnectionError("recommender down")
        >>> recommendations(7)
        []
    """
    given = dict(options)
    if policy is None and "on" not in given:
        raise TypeError(
            "fallback() needs on=: the exception types to answer, e.g. "
            "@fallback(on=ConnectionError, value=None). Answering every exception hides bugs."
        )
    if isinstance(policy, FallbackPolicy):  # one answer given replaces the policy's
        if "value" in given:
            given.setdefault("handler", None)
        elif "handler" in given:
            given.setdefault("value", UNSET)
    resolved = resolve_policy(
        "fallback", FallbackPolicy, policy, given, "@fallback(on=ConnectionError, value=None)"
    )
    return Decorator(_FallbackLayer(resolved), "@fallback")
