# `@retry`, `retrying()` and `RetryBudget`: the drivers around the sans-I/O core in
# _core/retry.py.
#
# A decorated function's call step is a driver from _drive.py bound to its `_RetryCall`: on the
# success path a call reads the clock once and allocates nothing else. After a failure the call
# gets its own `_Run` (the core's RetryRun plus events and notes), which decides each further
# attempt. The block form (`retrying()`) asks the same `_Run` around the user's block.
#
# Applied over a `@fallback` that answers every exception of a type it retries (with only
# fallbacks between them), the retry can never see that type: it warns (CompositionWarning).
from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from functools import partial
from typing import Any, Required, TypedDict, Unpack, overload

import attrs

from ._config import DEFAULTS
from ._core.budget import BudgetWindow
from ._core.fallback import FallbackPolicy
from ._core.retry import RetryPolicy, RetryRun
from ._core.seconds import non_negative_number, positive_seconds
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Layer, Target, call_function
from ._drive import emit, repeat_async, repeat_sync
from .events import RetriesExhausted, RetryScheduled
from .typing import ExceptionPredicate, ExceptionTypes, ResultPredicate, Wait

__all__ = [
    "Attempt",
    "RetryArguments",
    "RetryBudget",
    "RetryOptions",
    "RetryPolicy",
    "Retrying",
    "retry",
    "retrying",
]


class RetryBudget:
    """Limit retries to a share of calls, so a failing dependency is not hammered harder.

    Over the last *window* seconds, retries may not exceed *ratio* times the calls made, plus a
    reserve of *min_per_second* retries per second so that low traffic can still retry. Every
    call through a policy holding this budget counts; give the same budget to several policies
    to share it between them. Thread-safe.

    Args:
        ratio: Retries allowed per call, e.g. 0.2 for one retry per five calls.
        min_per_second: Retries always allowed per second, whatever the traffic.
        window: Seconds of history the budget looks at.
    """

    __slots__ = ("_lock", "_window", "min_per_second", "ratio", "window")

    def __init__(
        self, ratio: float = 0.2, min_per_second: float = 10.0, window: float | timedelta = 10.0
    ) -> None:
        self.ratio = non_negative_number("ratio", ratio)
        self.min_per_second = non_negative_number("min_per_second", min_per_second)
        self.window = positive_seconds("window", window)
        self._window = BudgetWindow(self.ratio, self.min_per_second, self.window)
        self._lock = threading.Lock()

    def record_call(self, now: float) -> None:
        """Count one call made at *now* (a time on the configured clock)."""
        with self._lock:
            self._window.record_call(now)

    def try_retry(self, now: float) -> bool:
        """Spend one retry at *now* if the budget allows it, and say whether it did."""
        with self._lock:
            return self._window.try_retry(now)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"window={self.window!r})"
        )


class _Settings(TypedDict, total=False):
    on_result: ResultPredicate | None
    attempts: int | None
    deadline: float | timedelta | None
    wait: Wait
    max_wait: float | timedelta
    retry_after: bool
    budget: RetryBudget | None
    name: str | None


class RetryOptions(_Settings, total=False):
    """The keyword arguments of :func:`retry` and :func:`retrying`: the fields of RetryPolicy.

    With a policy given, every one is optional and overrides the policy's field.
    """

    on: ExceptionTypes | ExceptionPredicate


class RetryArguments(_Settings, total=False):
    """The keyword arguments of :func:`retry` and :func:`retrying` without a policy.

    ``on=`` is required: retrying every exception hides bugs.
    """

    on: Required[ExceptionTypes | ExceptionPredicate]


_FIELDS = frozenset(RetryOptions.__optional_keys__ | RetryOptions.__required_keys__)


def _policy(caller: str, policy: object, options: dict[str, Any]) -> RetryPolicy:
    unknown = sorted(set(options) - _FIELDS)
    if unknown:
        raise TypeError(
            f"{caller}() got unknown keyword {', '.join(map(repr, unknown))}; the settings are: "
            f"{', '.join(field.name for field in attrs.fields(RetryPolicy))}"
        )
    if policy is None:
        if "on" not in options:
            raise TypeError(
                f"{caller}() needs on=: the exception types to retry, e.g. "
                f"{caller}(on=ConnectionError). Retrying every exception hides bugs."
            )
        return RetryPolicy(**options)
    if isinstance(policy, RetryPolicy):
        return attrs.evolve(policy, **options) if options else policy
    if isinstance(policy, type) and issubclass(policy, BaseException):
        hint = f"pass it as on=: @{caller}(on={policy.__name__})"
    elif callable(policy):
        hint = f"{caller} needs its settings in parentheses: @{caller}(on=ConnectionError)"
    else:
        hint = f"write @{caller}(on=ConnectionError, attempts=3)"
    raise TypeError(f"{caller}() takes a RetryPolicy or keyword arguments, not {policy!r}: {hint}")


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _RetryDriver:
    """One policy as applied in one place (a decorated function or a block)."""

    __slots__ = ("budget", "checks_results", "name", "policy")

    def __init__(self, policy: RetryPolicy, name: str) -> None:
        self.policy = policy
        self.name = name
        self.budget = policy.budget
        self.checks_results = policy.on_result is not None

    def start(self) -> float:
        """Read the clock at the start of a call and count the call against the budget."""
        now = DEFAULTS.clock.monotonic()
        if self.budget is not None:
            self.budget.record_call(now)
        return now

    def begin(self, start: float) -> _Run:
        """Return the state of a call that started at *start* and has failed once."""
        attempts = self.policy.attempts
        if DEFAULTS.testing:
            cap = DEFAULTS.testing_attempts
            attempts = cap if attempts is None else min(attempts, cap)
        return _Run(self.policy, start, attempts, self.name, current_deadline())


class _Run(RetryRun):
    """One call's retry state, plus what the drivers ask of it.

    Its decisions report their events, and a run that gives up notes why on the exception.
    """

    __slots__ = ()

    def failed(self, exc: Exception) -> float | None:
        """Decide after a failed attempt: the wait before the next one, or ``None`` to give up.

        On giving up, *exc* gets a note saying how the retrying went; the caller re-raises it.
        """
        clock = DEFAULTS.clock
        observed = DEFAULTS.observers
        # the time only matters to a deadline, a budget or an event until the run gives up
        now = clock.monotonic() if self.timed or observed else self.start
        try:
            delay = self.after_error(exc, now, clock.time)
        except Exception as hook_error:  # from on= or wait=: show what it was judging
            raise hook_error from exc
        if observed:
            self._report(now, delay, _error_type(exc))
        if delay is None and (self.reason is not None or self.attempt > 1):
            exc.add_note(self.note(clock.monotonic()))
        return delay

    def returned(self, result: object) -> float | None:
        """Decide after a returned *result*: the wait before retrying, or ``None`` to return it."""
        now = DEFAULTS.clock.monotonic()
        delay = self.after_result(result, now)
        if DEFAULTS.observers:
            self._report(now, delay, None)
        return delay

    def _report(self, now: float, delay: float | None, error: str | None) -> None:
        name = self.name
        if delay is not None:
            event: RetryScheduled | RetriesExhausted = RetryScheduled(
                policy=name, time=now, attempt=self.attempt - 1, delay=delay, error_type=error
            )
        elif self.reason is not None:
            event = RetriesExhausted(
                policy=name,
                time=now,
                attempts=self.attempt,
                elapsed=now - self.start,
                error_type=error,
                reason=self.reason,
            )
        else:
            return
        emit(DEFAULTS, event)


class _RetryCall(_RetryDriver):
    """The policy applied to one decorated function: what the drivers in _drive.py need."""

    __slots__ = ("nested", "on_start")

    def __init__(self, policy: RetryPolicy, name: str, inner: Call) -> None:
        super().__init__(policy, name)
        # None when the step inside is the function itself, which is then called directly
        self.nested = None if inner is call_function else inner
        self.on_start = None if policy.budget is None else policy.budget.record_call


@attrs.frozen
class _RetryLayer:
    policy: RetryPolicy

    def build(self, inner: Call, target: Target) -> Call:
        policy = _RetryCall(self.policy, self.policy.name or target.name, inner)
        return partial(repeat_async if target.is_async else repeat_sync, policy)

    def check(self, inner: tuple[Layer, ...], target: Target) -> Iterator[str]:
        """Say which of the retried exception types a fallback inside answers first."""
        retried = self.policy._matching.types
        if retried is None:  # a predicate: what it retries is not known before a call
            return
        for layer in inner:
            answer = getattr(layer, "policy", None)
            if not isinstance(answer, FallbackPolicy):
                return  # another layer may raise these types itself: stop looking
            answered = answer._matching.types
            if answered is None:
                continue
            hidden = [kind.__name__ for kind in retried if issubclass(kind, answered)]
            if hidden:
                what = ", ".join(hidden)
                yield (
                    f"@retry({self.policy.name or target.name}) around @fallback never "
                    f"retries {what}: the fallback inside answers it first, so the retry "
                    "never sees it fail. Put the @fallback outside the @retry"
                )


@overload
def retry(policy: RetryPolicy, /, **options: Unpack[RetryOptions]) -> Decorator: ...
@overload
def retry(**options: Unpack[RetryArguments]) -> Decorator: ...
def retry(policy: RetryPolicy | None = None, /, **options: Any) -> Decorator:
    """Retry the decorated function or method (sync or async) when it fails.

    Takes a :class:`RetryPolicy`, or its fields as keyword arguments (or both: the keywords
    override the policy's fields). After the last attempt the original exception propagates,
    with a note saying how many attempts were made over how long.

    Raises:
        TypeError: At decoration time, for a missing ``on=``, an exception instance or a
            non-exception class in ``on=``, or a generator function.
        ValueError: At decoration time, for ``attempts < 1``, a negative or NaN wait, or a
            deadline that is not positive.

    Warns:
        CompositionWarning: At decoration time, over a ``@fallback`` that answers an
            exception type ``on=`` names before the retry can see it.

    Example:
        >>> from resilient import retry
        >>> @retry(on=ConnectionError, attempts=3)
        ... def fetch(url: str) -> bytes:
        ...     return b"ok"
        >>> fetch("https://example.com")
        b'ok'
    """
    return Decorator(_RetryLayer(_policy("retry", policy, options)), "retry")


class Attempt:
    """One attempt of a :func:`retrying` block: use it as ``with attempt:`` around the work.

    Attributes:
        number: Which attempt this is, counting from 1.
        delay: After the block failed: the seconds waited before the next attempt, or ``None``
            when there is none (the block succeeded, or retrying gave up).
    """

    __slots__ = ("_run", "delay", "number")

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.number = run.attempt
        self.delay: float | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if not isinstance(exc, Exception):
            return False
        self.delay = self._run.failed(exc)
        return self.delay is not None

    def __repr__(self) -> str:
        return f"<Attempt {self.number} of {self._run.name}>"


class Retrying:
    """The attempts of a retried block; iterate with ``for`` or ``async for``."""

    __slots__ = ("_driver",)

    def __init__(self, policy: RetryPolicy) -> None:
        self._driver = _RetryDriver(policy, policy.name or "retrying")

    def __iter__(self) -> Iterator[Attempt]:
        driver = self._driver
        run = driver.begin(driver.start())
        while True:
            attempt = Attempt(run)
            yield attempt
            if attempt.delay is None:
                return
            if attempt.delay and not DEFAULTS.testing:
                DEFAULTS.clock.sleep(attempt.delay)

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        driver = self._driver
        run = driver.begin(driver.start())
        while True:
            attempt = Attempt(run)
            yield attempt
            if attempt.delay is None:
                return
            if attempt.delay and not DEFAULTS.testing:
                await DEFAULTS.clock.asleep(attempt.delay)


@overload
def retrying(policy: RetryPolicy, /, **options: Unpack[RetryOptions]) -> Retrying: ...
@overload
def retrying(**options: Unpack[RetryArguments]) -> Retrying: ...
def retrying(policy: RetryPolicy | None = None, /, **options: Any) -> Retrying:
    """Retry a block of code that is not a function of its own.

    Example:
        >>> from resilient import retrying
        >>> for attempt in retrying(on=ConnectionError, attempts=3):
        ...     with attempt:
        ...         result = "done"
        >>> result
        'done'

    ``async for attempt in retrying(...)`` works the same way in coroutines, waiting with
    ``asyncio.sleep``. ``on_result=`` does not apply: a block has no result to check.
    """
    resolved = _policy("retrying", policy, options)
    if resolved.on_result is not None:
        raise TypeError("retrying() has no result to check: on_result= works with @retry only")
    return Retrying(resolved)
