"""The idempotency part of benchmarks/run.py: `@resilient.idempotent` beside AWS Powertools.

Each candidate is a decorator that makes the function of its scenario idempotent on the
runner's `redis-server`, keyed by the function's one argument, a request id. Two paths are
timed: a first call (a key no call has used: claim it, run the function, store its outcome)
and a replay (a key whose outcome is stored: read it back without running the function). The
baseline of each path is its floor written by hand on redis-py, the fewest commands that do
the work: ``SET key in-progress NX PX`` then ``SET key outcome PX`` for a first call, one
``GET`` for a replay. The anchor is AWS Powertools' `idempotent_function` with its Redis
persistence layer (sync only: it has no asyncio support). `check_idempotent` proves before
timing that every candidate really is idempotent: a second call with a key does not run the
function, and a duplicate made while the first call runs is refused. See docs/benchmarks.md
for what each row means.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import itertools
import json
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import cache  # benchmarks/cache.py, beside this file
import redis
import redis.asyncio
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.redis import CachePersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

import resilient
from resilient.backends.redis import RedisBackend

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

TTL = 300  # seconds an outcome is kept: longer than any run
TTL_MS = TTL * 1000
LEASE = 30  # seconds a first call's claim lasts: resilient's default lease_ttl
LEASE_MS = LEASE * 1000

# candidate names used by the runner's tables and targets
BARE = cache.BARE
RAW = cache.RAW
IDEMPOTENT = "resilient.idempotent"
POWERTOOLS = "Powertools idempotent_function"

# candidates that only pass the call through: they run the function on every call
PASSTHROUGH = frozenset({BARE})

# what the floor stores while a first call runs
CLAIMED = b"in-progress"


# -- the functions under test --------------------------------------------------------------------


def create_order(request_id: str) -> dict[str, object]:
    """What an idempotent call typically returns: a small record, stored and replayed."""
    return {"order": request_id, "cents": 500, "status": "created"}


async def acreate_order(request_id: str) -> dict[str, object]:
    return {"order": request_id, "cents": 500, "status": "created"}


# -- the candidates ------------------------------------------------------------------------------


def bare(function: Function) -> Function:
    """No idempotency at all: the function itself, run on every call."""
    return function


class InProgressError(RuntimeError):
    """The floor's answer to a duplicate made while the first call with its key runs."""


def _replayed(stored: bytes | str | None) -> Any:
    """Return the outcome the floor stored, or refuse a key whose first call still runs."""
    if stored is None or stored == CLAIMED:
        raise InProgressError("a call with this key is in progress")
    return json.loads(stored)


class _Invocation(LambdaContext):
    """A stand-in for the Lambda context outside AWS Lambda.

    Powertools dates a first call's in-progress record from the invocation's remaining time,
    which `IdempotencyConfig.register_lambda_context` gives it; without a context it warns on
    every first call and keeps the record in progress until the outcome's own expiry. Here
    the invocation always has the lease the other candidates get.
    """

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return LEASE_MS


class Candidates:
    """The candidates that hold clients, and what closes them at the end of the run.

    Every decoration gets a key prefix of its own, so no two candidates (nor a candidate's
    verification and its timed run) ever read each other's records. One redis-py client and
    one `RedisBackend` are shared by every decoration, as in the cache part.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._prefixes = itertools.count()
        self._backend = RedisBackend.from_url(url)
        self._client = redis.Redis.from_url(url)
        # redis.asyncio clients are bound to the loop that first uses them: made on first use
        self._aclient: redis.asyncio.Redis | None = None

    def _prefix(self) -> str:
        return f"bench-idempotent-{next(self._prefixes)}"

    def _async_client(self) -> redis.asyncio.Redis:
        if self._aclient is None:
            self._aclient = redis.asyncio.Redis.from_url(self.url)
        return self._aclient

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client, the asyncio ones inside *runner*'s loop."""

        async def aclose() -> None:
            await self._backend.aclose()
            if self._aclient is not None:
                await self._aclient.aclose()

        runner.run(aclose())
        self._client.close()

    # the floor: each path's fewest commands, written by hand

    def _raw_sync(self, function: Function, *, replaying: bool) -> Function:
        client, prefix = self._client, self._prefix()

        def execute(key: str, request_id: str) -> Any:
            if not client.set(key, CLAIMED, nx=True, px=LEASE_MS):
                return _replayed(client.get(key))  # a duplicate: only in check_idempotent
            try:
                value = function(request_id)
            except BaseException:
                client.delete(key)  # the request may be tried again, as Powertools does
                raise
            client.set(key, json.dumps(value), px=TTL_MS)
            return value

        if not replaying:

            @functools.wraps(function)
            def claim_first(request_id: str) -> Any:
                return execute(f"{prefix}:{request_id}", request_id)

            return claim_first

        @functools.wraps(function)
        def read_first(request_id: str) -> Any:
            key = f"{prefix}:{request_id}"
            stored = client.get(key)
            if stored is not None:
                return _replayed(stored)
            return execute(key, request_id)

        return read_first

    def _raw_async(self, function: Function, *, replaying: bool) -> Function:
        prefix = self._prefix()

        async def execute(key: str, request_id: str) -> Any:
            client = self._async_client()
            if not await client.set(key, CLAIMED, nx=True, px=LEASE_MS):
                return _replayed(await client.get(key))
            try:
                value = await function(request_id)
            except BaseException:
                await client.delete(key)
                raise
            await client.set(key, json.dumps(value), px=TTL_MS)
            return value

        if not replaying:

            @functools.wraps(function)
            async def claim_first(request_id: str) -> Any:
                return await execute(f"{prefix}:{request_id}", request_id)

            return claim_first

        @functools.wraps(function)
        async def read_first(request_id: str) -> Any:
            key = f"{prefix}:{request_id}"
            stored = await self._async_client().get(key)
            if stored is not None:
                return _replayed(stored)
            return await execute(key, request_id)

        return read_first

    def raw_first(self, function: Function) -> Function:
        """The first call's floor: ``SET key in-progress NX PX``, the call, ``SET key outcome PX``.

        A key already taken is read back with a ``GET``, which never happens while timing.
        """
        if inspect.iscoroutinefunction(function):
            return self._raw_async(function, replaying=False)
        return self._raw_sync(function, replaying=False)

    def raw_replay(self, function: Function) -> Function:
        """The replay's floor: one ``GET``; on a miss, the first call's floor."""
        if inspect.iscoroutinefunction(function):
            return self._raw_async(function, replaying=True)
        return self._raw_sync(function, replaying=True)

    # the libraries

    def resilient_idempotent(self, function: Function) -> Function:
        return resilient.idempotent(
            key="request_id", ttl=TTL, lease_ttl=LEASE, backend=self._backend, name=self._prefix()
        )(function)

    def powertools(self, function: Function) -> Function:
        # Powertools 3 marks its Redis layer deprecated in favour of CachePersistenceLayer,
        # which is the same class under another name, so making either one warns.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # its client protocol types set() more narrowly than redis-py does
            layer = CachePersistenceLayer(client=self._client)  # type: ignore[arg-type]
        config = IdempotencyConfig(expires_after_seconds=TTL)
        config.register_lambda_context(_Invocation())
        guarded = idempotent_function(
            function,
            data_keyword_argument="request_id",
            persistence_store=layer,
            config=config,
            key_prefix=self._prefix(),
        )

        @functools.wraps(function)
        def idempotent(request_id: str) -> Any:
            return guarded(request_id=request_id)  # it reads the key from a keyword only

        return idempotent

    def first_sync(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            RAW: self.raw_first,
            IDEMPOTENT: self.resilient_idempotent,
            POWERTOOLS: self.powertools,
        }

    def replay_sync(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            RAW: self.raw_replay,
            IDEMPOTENT: self.resilient_idempotent,
            POWERTOOLS: self.powertools,
        }

    # Powertools' idempotent_function calls the function and stores what it returns, which
    # for a coroutine function is a coroutine: it has no async rows.

    def first_async(self) -> dict[str, Decorate]:
        return {BARE: bare, RAW: self.raw_first, IDEMPOTENT: self.resilient_idempotent}

    def replay_async(self) -> dict[str, Decorate]:
        return {BARE: bare, RAW: self.raw_replay, IDEMPOTENT: self.resilient_idempotent}


# -- checking that a candidate is idempotent -----------------------------------------------------

ONCE = "verify-once"  # called twice in a row
DUPLICATE = "verify-duplicate"  # called again from inside its own first call


def check_idempotent(
    name: str, label: str, decorate: Decorate, function: Function, runner: asyncio.Runner
) -> None:
    """Check that *decorate* answers like *function*, and runs it once per key.

    Two calls with one key must answer alike and run the function once. A duplicate made
    from inside the first call with its key, while that call runs, must be refused with the
    candidate's "in progress" error and not run the function; the key's outcome is then
    stored and replayed as any other. The bare call runs the function every time.
    """
    is_async = inspect.iscoroutinefunction(function)
    passthrough = name in PASSTHROUGH
    runs: collections.Counter[str] = collections.Counter()
    refused: list[Exception] = []

    def count(request_id: str) -> Any:
        runs[request_id] += 1
        if request_id == DUPLICATE and not passthrough:
            try:
                decorated(request_id)
            except Exception as exc:
                refused.append(exc)
        return function(request_id)

    async def acount(request_id: str) -> Any:
        runs[request_id] += 1
        if request_id == DUPLICATE and not passthrough:
            try:
                await decorated(request_id)
            except Exception as exc:
                refused.append(exc)
        return await function(request_id)

    decorated = decorate(acount if is_async else count)

    def call(target: Function, request_id: str) -> Any:
        if not is_async:
            return target(request_id)

        async def await_call() -> Any:
            result: Awaitable[Any] = target(request_id)
            return await result

        return runner.run(await_call())

    for request_id in (ONCE, ONCE, DUPLICATE, DUPLICATE):
        outcome, expected = call(decorated, request_id), call(function, request_id)
        assert outcome == expected, f"{name}: {label} gave {outcome!r}, not {expected!r}"
    times = 2 if passthrough else 1
    assert runs == {ONCE: times, DUPLICATE: times}, (
        f"{name}: {label} ran the function {dict(runs)} times, not {times} per key"
    )
    if not passthrough:
        assert len(refused) == 1, f"{name}: {label} did not refuse a duplicate in progress"
        kind = type(refused[0]).__name__
        assert "InProgress" in kind, f"{name}: {label} refused a duplicate with {refused[0]!r}"
