# The drivers: the only code that sleeps or calls the user's function again after a capability's
# first-attempt fast path, and the one place that delivers events to observers.
#
# A capability writes its decisions once (a `Repeating` object per call, whose logic lives in the
# sans-I/O core); `repeat_sync` and `repeat_async` perform them: wait, call, ask, repeat. They
# are mirror images and the only sync/async pair. A generator of effects interpreted here would
# say the same thing, but it cost retry's failing path more than the whole hand-written loop
# (generator, send, StopIteration and an outcome object per attempt), so the decisions are plain
# methods. A stopped repetition re-raises with a bare `raise` inside its own `except`, which
# keeps the user's traceback and context untouched.
#
# Capabilities whose calls wait on a backend (the cache) write each call once as a generator
# of effects: `Op` (run a backend primitive: `backend.<name>` or, async, `backend.a<name>`),
# `CALL` (run the function), `Join` (wait for an in-process flight) and `Spawn` (run another
# procedure in the background). A backend writes its own primitives the same way, with one
# more effect: a plain callable of no arguments, one I/O call on a client it was given, whose
# result is sent back (awaited first, by `run_async`, when it is awaitable). `run_sync` and
# `run_async` perform them and send back the result, or throw the exception into the
# generator. Where a backend round trip dominates, the generator's cost (a microsecond) does
# not show; hot paths (a memory cache hit) answer before any generator is made.
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from ._config import DEFAULTS, Defaults
from .events import BackendFailed

if TYPE_CHECKING:
    from ._decorate import Call
    from ._signal import Signal
    from .events import Event

__all__ = [
    "CALL",
    "backend_failed",
    "Join",
    "Op",
    "Procedure",
    "Repeater",
    "Repeating",
    "Sleep",
    "Spawn",
    "emit",
    "repeat_async",
    "repeat_sync",
    "run_async",
    "run_sync",
    "type_name",
]

_logger = logging.getLogger("resilient")

_R = TypeVar("_R")


class Repeating(Protocol):
    """The per-call decisions of a repeating procedure (e.g. one call of a retry policy).

    After each attempt that raised (or returned a value the policy checks) the driver asks for
    the wait before the next attempt; ``None`` means stop: re-raise, or return the value.
    """

    def failed(self, exc: Exception) -> float | None:
        """Decide after the attempt raised *exc*."""

    def returned(self, result: Any) -> float | None:
        """Decide after the attempt returned *result*."""


class Repeater(Protocol):
    """What a driver needs of a repeating policy applied to one function."""

    @property
    def nested(self) -> Call | None:
        """The step to call, or ``None`` to call the function itself."""

    @property
    def checks_results(self) -> bool:
        """Whether returned values are judged too (else the first one returned ends the call)."""

    @property
    def on_start(self) -> Callable[[float], object] | None:
        """Told the start time of every call (e.g. to count it in a budget), if set."""

    def begin(self, start: float) -> Repeating:
        """Return the decisions of one call that started at *start*, when first needed."""


def repeat_sync(
    policy: Repeater, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call the function, and again after each wait the policy decides on (the sync driver).

    Bound to its policy with functools.partial, this is the call step a layer hands to wrapt.
    The per-call decisions are only built once an attempt fails (or returns a value to judge),
    so a first attempt that succeeds costs one clock read and a few checks.
    """
    start = DEFAULTS.clock.monotonic()
    if policy.on_start is not None:
        policy.on_start(start)
    nested = policy.nested
    run = None
    while True:
        try:
            if nested is None:
                result = wrapped(*args, **kwargs)
            else:
                result = nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if run is None:
                run = policy.begin(start)
            delay = run.failed(exc)
            if delay is None:
                raise
        else:
            if not policy.checks_results:
                return result
            if run is None:
                run = policy.begin(start)
            delay = run.returned(result)
            if delay is None:
                return result
        if delay and not DEFAULTS.testing:
            DEFAULTS.clock.sleep(delay)


async def repeat_async(
    policy: Repeater, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Await the function, and again after each wait the policy decides on (the async driver)."""
    start = DEFAULTS.clock.monotonic()
    if policy.on_start is not None:
        policy.on_start(start)
    nested = policy.nested
    run = None
    while True:
        try:
            if nested is None:
                result = await wrapped(*args, **kwargs)
            else:
                result = await nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if run is None:
                run = policy.begin(start)
            delay = run.failed(exc)
            if delay is None:
                raise
        else:
            if not policy.checks_results:
                return result
            if run is None:
                run = policy.begin(start)
            delay = run.returned(result)
            if delay is None:
                return result
        if delay and not DEFAULTS.testing:
            await DEFAULTS.clock.asleep(delay)


def emit(defaults: Defaults, event: Event) -> None:
    """Deliver *event* to every configured observer; an observer never breaks the call.

    A failing observer is logged once (per observer) and otherwise ignored; in testing mode its
    exception propagates so that tests see it.
    """
    for observer in defaults.observers:
        try:
            observer(event)
        except Exception:
            if defaults.testing:
                raise
            if id(observer) not in defaults.failed_observers:
                defaults.failed_observers[id(observer)] = observer
                _logger.exception(
                    "resilient observer %r raised on %s; it stays installed and further "
                    "errors from it are not logged",
                    observer,
                    event.kind,
                )


def backend_failed(
    policy: str, backend: object, operation: str, error: BaseException, suppressed: int = 0
) -> None:
    """Report that *backend* failed *operation* with *error*, on behalf of *policy*."""
    if DEFAULTS.observers:
        event = BackendFailed(
            policy=policy,
            time=DEFAULTS.clock.monotonic(),
            backend=str(getattr(backend, "name", type(backend).__name__)),
            operation=operation,
            error_type=type_name(error),
            suppressed=suppressed,
        )
        emit(DEFAULTS, event)


def type_name(error: BaseException) -> str:
    """Name *error*'s class as events report it: bare for builtins, else with its module."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class Op(NamedTuple):
    """Effect: run the backend primitive *name* with these arguments; send back its result.

    The backend is the procedure's, unless the effect names its own.
    """

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    backend: Any = None


class Join(NamedTuple):
    """Effect: wait until *landing* fires (a flight landed, a channel woke), or *timeout* passes.

    Sends back whether it fired.
    """

    landing: Signal
    timeout: float | None = None


class Sleep(NamedTuple):
    """Effect: wait *seconds* on the configured clock (more than zero); send back None."""

    seconds: float


class Spawn(NamedTuple):
    """Effect: run *procedure* in the background (a worker thread, or a task of this loop)."""

    procedure: Procedure


CALL = object()
"""Effect: run the function (the step inside this layer); send back its result."""

Procedure = Generator[object, Any, Any]

# Background procedures of sync callers run on a small pool, created on first use and dropped
# in a forked child (its threads do not survive the fork).
_POOL_WORKERS = 4
_pool: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()
# Tasks of async callers, held so the event loop does not drop them while they run.
_tasks: set[asyncio.Task[Any]] = set()


def _no_call() -> Any:
    raise TypeError("this procedure has no function to call")  # pragma: no cover - a bug


def _forget_pool() -> None:
    _pool.clear()


os.register_at_fork(after_in_child=_forget_pool)


def _background() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool:
            _pool.append(
                ThreadPoolExecutor(_POOL_WORKERS, thread_name_prefix="resilient-background")
            )
        return _pool[0]


def run_sync(
    procedure: Generator[object, Any, _R], backend: Any = None, call: Callable[[], Any] = _no_call
) -> _R:
    """Perform *procedure*'s effects in this thread and return its result."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = procedure.send(reply) if error is None else procedure.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the generator's declared return
        reply = error = None
        try:
            if effect is CALL:
                reply = call()
            elif type(effect) is Op:
                target = backend if effect.backend is None else effect.backend
                reply = getattr(target, effect.name)(*effect.args, **effect.kwargs)
            elif type(effect) is Join:
                reply = effect.landing.wait(effect.timeout)
            elif type(effect) is Sleep:
                DEFAULTS.clock.sleep(effect.seconds)
            elif type(effect) is Spawn:
                _background().submit(run_sync, effect.procedure, backend, call)
            elif callable(effect):
                reply = effect()
            else:  # pragma: no cover - a bug in a procedure
                raise TypeError(f"unknown effect {effect!r}")  # noqa: TRY301 - handed over below
        except BaseException as exc:  # noqa: BLE001 - handed to the procedure, which decides
            error = exc


async def run_async(
    procedure: Generator[object, Any, _R], backend: Any = None, call: Callable[[], Any] = _no_call
) -> _R:
    """Perform *procedure*'s effects in this task and return its result."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = procedure.send(reply) if error is None else procedure.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the generator's declared return
        reply = error = None
        try:
            if effect is CALL:
                reply = await call()
            elif type(effect) is Op:
                target = backend if effect.backend is None else effect.backend
                reply = await getattr(target, "a" + effect.name)(*effect.args, **effect.kwargs)
            elif type(effect) is Join:
                reply = await effect.landing.await_fired(effect.timeout)
            elif type(effect) is Sleep:
                await DEFAULTS.clock.asleep(effect.seconds)
            elif type(effect) is Spawn:
                task = asyncio.get_running_loop().create_task(
                    run_async(effect.procedure, backend, call)
                )
                _tasks.add(task)
                task.add_done_callback(_tasks.discard)
            elif callable(effect):
                reply = effect()
                if inspect.isawaitable(reply):
                    reply = await reply
            else:  # pragma: no cover - a bug in a procedure
                raise TypeError(f"unknown effect {effect!r}")  # noqa: TRY301 - handed over below
        except BaseException as exc:  # noqa: BLE001 - handed to the procedure, which decides
            error = exc
