# `@rate_limited` and `with limit:`: at most `rate` calls per `per` seconds, per key, decided by
# the backend's `throttle` primitive (GCRA, see _core/ratelimit.py).
#
# Rules:
# - A decision is one backend primitive: in this process on MemoryBackend, one command on
#   Redis, on the store's own clock. The common decision (admitted at once) comes back as the
#   shared ADMITTED tuple, so the hot path only compares it by identity.
# - A call over the limit raises RateLimitedError with the time until a token is free. With
#   `wait=True` the backend reserves the next token for it when that comes within the call's
#   patience (`max_wait`, cut to the caller's deadline): the call sleeps until then and runs.
#   A call whose token would come later is refused at once, without waiting, so a wait never
#   ends past the deadline. A reserved token is spent even if the caller is cancelled while it
#   waits: the limit errs on admitting fewer calls, never more.
# - The rare paths (refused, waiting, reporting) are one procedure, `_settled`, performed by
#   `run_sync` or `run_async`; the sync and async steps differ only in awaiting the primitive.
# - The backend failing is the caller's choice: `fail_open=True` (default) lets the call go and
#   reports backend.failed; `fail_open=False` raises BackendUnavailableError.
# - Limits are named: `{namespace}:ratelimit:{name}`, plus `:{digest}` of the key when `key=`
#   (or a key given to `acquire`) splits it. Raw argument data never becomes a backend key.
from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import attrs

from ._config import DEFAULTS
from ._core.ratelimit import ADMITTED, RateLimitPolicy, Throttled
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, call_function, resolve_policy
from ._drive import Procedure, Sleep, backend_failed, emit, run_async, run_sync
from ._keys import CallKeys, digest
from .events import RateLimitAllowed, RateLimitRejected
from .exceptions import BackendUnavailableError, RateLimitedError

__all__ = ["RateLimitOptions", "RateLimiter", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")


class RateLimitOptions(TypedDict, total=False):
    """The keyword arguments of :func:`rate_limited`: the fields of :class:`RateLimitPolicy`."""

    rate: float
    per: float | timedelta
    burst: int | None
    key: str | Callable[..., object] | None
    wait: bool
    max_wait: float | timedelta | None
    fail_open: bool
    backend: object
    name: str | None


class _Limit:
    """One rate limit: where it lives, and what its decisions other than "go" do."""

    __slots__ = ("_stem", "name", "namespace", "policy", "root")

    def __init__(self, policy: RateLimitPolicy, name: str) -> None:
        self.policy = policy
        self.name = name
        self._stem = f":ratelimit:{{{name.replace('{', '(').replace('}', ')')}}}"
        self.namespace = DEFAULTS.namespace
        self.root = self.namespace + self._stem  # the key of the limit's one bucket

    def key(self, part: str | None) -> str:
        """Return the backend key of the limit, or of its part *part* (a digest)."""
        if DEFAULTS.namespace is not self.namespace:  # configured anew since
            self.namespace = DEFAULTS.namespace
            self.root = self.namespace + self._stem
        return self.root if part is None else f"{self.root}:{part}"

    def patience(self) -> float:
        """Seconds a call with ``wait=True`` may wait for a token now, cut to the deadline."""
        max_wait = self.policy.max_wait
        left = math.inf if max_wait is None else max_wait
        ambient = current_deadline()  # the caller's (`resilient.deadline`)
        if ambient is not None:
            left = max(0.0, min(left, ambient - DEFAULTS.clock.monotonic()))
        return left

    def settled(self, decision: Throttled) -> Procedure:
        """Refuse the call, or wait for the token reserved for it."""
        if not decision.admitted:
            if DEFAULTS.observers:
                now = DEFAULTS.clock.monotonic()
                event = RateLimitRejected(policy=self.name, time=now, retry_after=decision.wait)
                emit(DEFAULTS, event)
            raise RateLimitedError(self.name, decision.wait)
        if decision.wait > 0:
            yield Sleep(decision.wait)
        if DEFAULTS.observers:
            self.allowed(decision.wait)

    def allowed(self, waited: float) -> None:
        now = DEFAULTS.clock.monotonic()
        emit(DEFAULTS, RateLimitAllowed(policy=self.name, time=now, waited=waited))

    def failed(self, backend: object, error: Exception) -> None:
        """The backend could not decide: let the call go (reported), or raise."""
        if not self.policy.fail_open:
            name = str(getattr(backend, "name", type(backend).__name__))
            raise BackendUnavailableError(
                f"rate limit {self.name!r}: the backend failed to decide: {error!r}",
                backend=name,
                operation="throttle",
            ) from error
        backend_failed(self.name, backend, "throttle", error)


Part = Callable[[Any, tuple[Any, ...], dict[str, Any]], str]
"""What picks a call's bucket of a limit split by key: a digest of (instance, args, kwargs)."""


class _Limited:
    """One limit applied to one function: its sync and async call steps.

    The steps are the hot path, so they hold the limit's settings themselves and call the
    backend directly; whatever is not "go at once" is the limit's business.
    """

    __slots__ = ("backend", "burst", "inner", "interval", "limit", "nested", "part", "wait")

    def __init__(self, limit: _Limit, part: Part | None, inner: Call) -> None:
        self.limit = limit
        self.part = part
        self.inner = inner
        self.nested = None if inner is call_function else inner  # None: call the function
        self.backend = limit.policy.backend
        self.interval = limit.policy.interval
        self.burst = limit.policy.capacity
        self.wait = limit.policy.wait

    def _key(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The call's bucket, when it is not the limit's one bucket as configured."""
        part = None if self.part is None else self.part(instance, args, kwargs)
        return self.limit.key(part)

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        limit = self.limit
        backend: Any = self.backend or DEFAULTS.backend
        patience = limit.patience() if self.wait else 0.0
        key = (
            limit.root
            if self.part is None and DEFAULTS.namespace is limit.namespace
            else self._key(instance, args, kwargs)
        )
        try:
            decision = backend.throttle(key, self.interval, self.burst, patience)
        except Exception as error:  # noqa: BLE001 - the failure policy decides
            limit.failed(backend, error)
        else:
            if decision is not ADMITTED:
                run_sync(limit.settled(decision))
            elif DEFAULTS.observers:
                limit.allowed(0.0)
        if self.nested is None:
            return wrapped(*args, **kwargs)
        return self.nested(wrapped, instance, args, kwargs)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        limit = self.limit
        backend: Any = self.backend or DEFAULTS.backend
        patience = limit.patience() if self.wait else 0.0
        key = (
            limit.root
            if self.part is None and DEFAULTS.namespace is limit.namespace
            else self._key(instance, args, kwargs)
        )
        try:
            decision = await backend.athrottle(key, self.interval, self.burst, patience)
        except Exception as error:  # noqa: BLE001 - the failure policy decides
            limit.failed(backend, error)
        else:
            if decision is not ADMITTED:
                await run_async(limit.settled(decision))
            elif DEFAULTS.observers:
                limit.allowed(0.0)
        return await self.inner(wrapped, instance, args, kwargs)


@attrs.frozen
class _RateLimitLayer:
    policy: RateLimitPolicy

    def build(self, inner: Call, target: Target) -> Call:
        policy = self.policy
        name = policy.name or target.name
        part = None if policy.key is None else CallKeys(target.function, name, policy.key).shared
        step = _Limited(_Limit(policy, name), part, inner)
        return step.call_async if target.is_async else step.call_sync


def _given_key(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The bucket of a block's key (see :meth:`RateLimiter.acquire`)."""
    return digest(args[0], "rate limit key")


def _nothing(key: Hashable) -> None:
    """What a block's decision goes on to call: nothing (its argument is the key)."""


async def _anothing(key: Hashable) -> None:
    """What a block's decision goes on to await: nothing."""


class RateLimiter:
    """A rate limit: a decorator for functions, and a context manager for blocks of code.

    Made by :func:`rate_limited`. Decorating gives each function its limit (named after it,
    unless ``name=`` names the limit, which functions decorated with the same name share). A
    ``with`` block takes a token of the named limit on entry; :meth:`acquire` takes one for a
    key of your choosing.
    """

    __slots__ = ("_blocks", "policy")

    def __init__(self, policy: RateLimitPolicy) -> None:
        self.policy = policy
        # a block's decision is the call step's, around a function that does nothing: one
        # step for the limit's one bucket, one for the buckets of given keys
        self._blocks: tuple[_Limited, _Limited] | None = None
        if policy.name is not None:
            limit = _Limit(policy, policy.name)
            whole = _Limited(limit, None, call_function)
            self._blocks = (whole, _Limited(limit, _given_key, call_function))

    def __repr__(self) -> str:
        policy = self.policy
        return f"<RateLimiter {policy.name!r} rate={policy.rate:g} per={policy.per:g}>"

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Limit the calls of *function* (sync or async, a function or a method)."""
        return Decorator(_RateLimitLayer(self.policy), "@rate_limited")(function)

    def _block(self, key: Hashable) -> _Limited:
        if self._blocks is None:
            raise TypeError(
                "a rate limit used in a with block or through acquire() needs a name, which is "
                "where its state lives: write rate_limited(rate=..., name='partner-api')"
            )
        return self._blocks[key is not None]

    def acquire(self, key: Hashable = None) -> None:
        """Take a token, waiting for it if the limit has ``wait=True``; in a thread.

        *key* picks one of the limit's separate buckets (a user id, say); by default the
        limit has one. Raises :class:`~resilient.exceptions.RateLimitedError` when none is
        free in time.
        """
        self._block(key).call_sync(_nothing, None, (key,), {})

    async def aacquire(self, key: Hashable = None) -> None:
        """Take a token in a task (see :meth:`acquire`)."""
        await self._block(key).call_async(_anothing, None, (key,), {})

    def __enter__(self) -> None:
        """Take a token of the limit's one bucket (see :meth:`acquire`)."""
        self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Do nothing: a token, once taken, is spent."""

    async def __aenter__(self) -> None:
        """Take a token of the limit's one bucket, in a task (see :meth:`acquire`)."""
        await self.aacquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Do nothing: a token, once taken, is spent."""


def rate_limited(
    policy: RateLimitPolicy | None = None, /, **options: Unpack[RateLimitOptions]
) -> RateLimiter:
    """Let at most ``rate`` calls go every ``per`` seconds, with bursts of up to ``burst``.

    A call over the limit raises :class:`~resilient.exceptions.RateLimitedError`, which
    carries the seconds until a token is free; with ``wait=True`` it waits for its token
    instead, never past ``max_wait`` or the caller's :func:`resilient.deadline`. ``key=``
    gives each user (or tenant, or API key) a limit of their own. On the default backend the
    limit holds in this process; on a :class:`~resilient.backends.RedisBackend` it holds
    across every process using it, each decision one command on the server's clock.

    Raises:
        TypeError: For an unknown keyword, a ``rate`` or ``burst`` that is not a number, a
            ``key`` that is not a template or a callable, or a backend without ``throttle``.
        ValueError: For a ``rate``, ``per`` or ``max_wait`` that is not positive, a ``burst``
            below 1, ``max_wait`` without ``wait=True``, or a ``key`` template naming no
            parameter (when the function is decorated).

    Example:
        >>> from resilient import rate_limited
        >>> @rate_limited(rate=2, per=1.0)
        ... def ping() -> str:
        ...     return "pong"
        >>> ping(), ping()
        ('pong', 'pong')
        >>> ping()
        Traceback (most recent call last):
          ...
        resilient.exceptions.RateLimitedError: rate limit '...ping' reached: ...
    """
    resolved = resolve_policy(
        "rate_limited", RateLimitPolicy, policy, options, "@rate_limited(rate=100, per=1.0)"
    )
    return RateLimiter(resolved)
