# Process-wide defaults. Capabilities read `DEFAULTS` at call time (so `configure()` after
# decoration takes effect) through plain attribute access, which keeps the hot path cheap.
# A hot path may instead keep a snapshot of what it reads, if it registers a function with
# `on_change` that drops the snapshot: every assignment to a field of `DEFAULTS` (configure,
# reset_defaults, the testing helpers) stores the value, then counts one more `generation`,
# then calls those functions. A snapshot taken while another thread changes the defaults is
# kept only if `generation` is the same after it was stored as before it was read.
# Nothing here connects, spawns or registers anything.
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import attrs

from ._clock import SystemClock
from .typing import Backend, Clock, Observer

__all__ = ["DEFAULTS", "Defaults", "configure", "on_change", "reset_defaults"]

_listeners: list[Callable[[], object]] = []
generation = 0  # changes of the defaults so far


def on_change(listener: Callable[[], object]) -> None:
    """Call *listener* after every change of a field of `DEFAULTS`, from then on."""
    _listeners.append(listener)


def _changed(instance: object, attribute: attrs.Attribute[object], value: object) -> object:
    global generation  # noqa: PLW0603 - the one counter every snapshot checks
    object.__setattr__(instance, attribute.name, value)  # in place before anyone is told
    generation += 1
    for listener in _listeners:
        listener()
    return value


@attrs.define(slots=True, kw_only=True, on_setattr=_changed)
class Defaults:
    """The mutable process-wide settings; one instance, `DEFAULTS`."""

    clock: Clock = attrs.field(factory=SystemClock)
    backend: Backend = attrs.field(factory=lambda: _memory_backend())  # noqa: PLW0108 - defined below
    namespace: str = "resilient"
    observers: tuple[Observer, ...] = ()
    testing: bool = False
    testing_attempts: int = 1
    # observers that already raised once, by id (kept alive here so ids are not reused)
    failed_observers: dict[int, Observer] = attrs.field(factory=dict)


def _memory_backend() -> Backend:
    from .backends.memory import MemoryBackend  # noqa: PLC0415 - it imports this module

    return MemoryBackend()


DEFAULTS = Defaults()

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_namespace(namespace: object) -> str:
    """Return *namespace* if it can prefix storage keys, else raise a helpful error."""
    if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
        raise ValueError(
            f"namespace={namespace!r} must be 1 to 64 letters, digits, '_', '.' or '-', "
            "e.g. namespace='orders'; it prefixes every key the library stores"
        )
    return namespace


def configure(
    *,
    clock: Clock | None = None,
    observers: Iterable[Observer] | None = None,
    backend: Backend | None = None,
    namespace: str | None = None,
) -> None:
    """Set process-wide defaults; arguments left as ``None`` keep their current value.

    Args:
        clock: Where every capability reads time and sleeps; see :class:`resilient.typing.Clock`.
        observers: Callables that receive every :mod:`resilient.events` event, in order. This
            replaces the observers configured before.
        backend: Where capabilities keep state unless given ``backend=`` themselves; the
            default is an in-process :class:`resilient.backends.MemoryBackend`. Use a
            :class:`resilient.backends.RedisBackend` to share state between processes.
        namespace: The prefix of every key stored (default ``"resilient"``), so that several
            applications can share one Redis.

    Raises:
        TypeError: If *clock* lacks a method of the clock protocol, an observer is not
            callable, or *backend* lacks a method of :class:`resilient.typing.Backend`.
        ValueError: If *namespace* is empty, too long, or has characters other than letters,
            digits, ``_``, ``.`` and ``-``.

    Example:
        >>> import logging, resilient
        >>> from resilient.observers import LoggingObserver
        >>> resilient.configure(observers=[LoggingObserver(logging.getLogger("app"))])
        >>> resilient.reset_defaults()
    """
    if clock is not None:
        if not isinstance(clock, Clock):
            raise TypeError(
                f"clock={clock!r} is not a clock: it needs monotonic(), time(), sleep() and "
                "asleep(); see resilient.typing.Clock, or use resilient.testing.FakeClock()"
            )
        DEFAULTS.clock = clock
    if observers is not None:
        installed = tuple(observers)
        for observer in installed:
            if not callable(observer):
                raise TypeError(
                    f"observer {observer!r} is not callable: an observer is any callable taking "
                    "one event, e.g. resilient.observers.LoggingObserver()"
                )
        DEFAULTS.observers = installed
    if backend is not None:
        if not isinstance(backend, Backend):
            raise TypeError(
                f"backend={backend!r} is not a backend: it needs the methods of "
                "resilient.typing.Backend; use resilient.backends.MemoryBackend() or "
                "resilient.backends.RedisBackend.from_url(url)"
            )
        DEFAULTS.backend = backend
    if namespace is not None:
        DEFAULTS.namespace = check_namespace(namespace)


def reset_defaults() -> None:
    """Restore every default.

    That is the system clock, no observers, a fresh in-memory backend, the ``"resilient"``
    namespace, and testing mode off.
    """
    fresh = Defaults()
    for field in attrs.fields(Defaults):
        setattr(DEFAULTS, field.name, getattr(fresh, field.name))
