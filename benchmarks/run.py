"""Measure `resilient.retry`, `.breaker`, `.cached`, `.lock`, `.deduped`, `.idempotent`, and more.

Every candidate wraps the same function and is timed in batches, interleaved round-robin with
the others in one process run; the result is each candidate's cost as a ratio to a baseline of
the same scenario (a bare call; for Redis, redis-py doing the same commands by hand), because on
a shared machine absolute times are noise but ratios measured side by side are not. The Redis
scenarios start their own `redis-server` (benchmarks/cache.py) and count the commands each
candidate sends; idempotency (benchmarks/idempotency.py) times a first call and a replay there,
beside AWS Powertools and the floor of each path on redis-py; rate limits
(benchmarks/ratelimit.py) time a decision in memory and on Redis beside `limits` and a token
bucket by hand, and bulkheads (benchmarks/bulkhead.py) an uncontended admission, in one process
and shared on Redis; `resilient.pipeline` (benchmarks/pipeline.py, ``--only pipeline``) is timed
beside its decorators stacked by hand and each alone. Two parts are not timed in
batches: contended locks (benchmarks/lock.py: processes hammering one lock, acquisitions per
second) and dedupe (benchmarks/dedupe.py: many callers of one slow function, in one process or
spread over four, wall time to serve them all). See docs/benchmarks.md for the method and the
latest measured tables.

Run: ``python benchmarks/run.py`` (about two minutes), ``--quick`` for a smoke test,
``--markdown`` for the tables as markdown, ``--check`` to exit 1 when a target is missed,
``--only retry`` (or breaker, cache, lock, dedupe, idempotency, ratelimit, bulkhead) for one
part. ``--json ratios.json`` also writes every ratio to a file and ``--plot figure.png`` draws
them (benchmarks/plot.py: a panel per part, ours highlighted); ``--from ratios.json --plot
figure.png`` draws a saved run's figure again without measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import gc
import importlib.metadata
import inspect
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeAlias, cast

import backoff
import breaker  # benchmarks/breaker.py, beside this file
import bulkhead  # benchmarks/bulkhead.py, beside this file
import cache  # benchmarks/cache.py, beside this file
import dedupe  # benchmarks/dedupe.py, beside this file
import idempotency  # benchmarks/idempotency.py, beside this file
import lock  # benchmarks/lock.py, beside this file
import pipeline  # benchmarks/pipeline.py, beside this file
import plot  # benchmarks/plot.py, beside this file
import ratelimit  # benchmarks/ratelimit.py, beside this file
import stamina
import tenacity

import resilient

ATTEMPTS = 3

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]


# -- the functions under test --------------------------------------------------------------------


def succeed(value: int) -> int:
    return value


def fail(value: int) -> int:
    raise ConnectionError(value)


async def asucceed(value: int) -> int:
    return value


async def afail(value: int) -> int:
    raise ConnectionError(value)


# -- the candidates: each a decorator, applied alike to the sync and the async function ----------


def bare(function: Function) -> Function:
    """No retrying at all: the function itself."""
    return function


def hand_written_loop(function: Function) -> Function:
    """The plain for/try loop a user would write instead of using a library.

    It re-raises the last error from inside the loop, as such loops are usually written; the
    variant that makes the last call after the loop is about 10% faster on the failing path.
    """
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def retry_async(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return await function(*args, **kwargs)
                except ConnectionError:
                    if attempt == ATTEMPTS:
                        raise
            raise AssertionError("unreachable")

        return retry_async

    @functools.wraps(function)
    def retry_sync(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return function(*args, **kwargs)
            except ConnectionError:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return retry_sync


def resilient_retry(function: Function) -> Function:
    return resilient.retry(on=ConnectionError, attempts=ATTEMPTS, wait=resilient.wait.none())(
        function
    )


def resilient_stacked(function: Function) -> Function:
    # Two policies for two errors, as an application would stack them. Only the outer one matches
    # ConnectionError, so the failing path still makes exactly three attempts; the inner layer
    # sees each failure and passes it on. Both layers run inside one fused wrapper.
    inner = resilient.retry(on=TimeoutError, attempts=ATTEMPTS, wait=resilient.wait.none())
    return resilient_retry(inner(function))


def tenacity_retry(function: Function) -> Function:
    # tenacity's default wait is wait_none(); reraise=True re-raises the original exception
    # instead of a RetryError.
    return tenacity.retry(
        retry=tenacity.retry_if_exception_type(ConnectionError),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        reraise=True,
    )(function)


def stamina_retry(function: Function) -> Function:
    return stamina.retry(
        on=ConnectionError,
        attempts=ATTEMPTS,
        timeout=None,
        wait_initial=0,
        wait_max=0,
        wait_jitter=0,
    )(function)


def backoff_retry(function: Function) -> Function:
    # logger=None: no log record per retry, like the other candidates (see disable_logging()).
    return backoff.on_exception(
        backoff.constant,
        ConnectionError,
        max_tries=ATTEMPTS,
        interval=0,
        jitter=None,
        logger=None,
    )(function)


RAW = cache.RAW
RESILIENT = "resilient.retry"
STACKED = "resilient.retry x2 (stacked)"
LOOP = "hand-written loop"
BARE = cache.BARE
BACKOFF = "backoff"

CANDIDATES: dict[str, Decorate] = {
    BARE: bare,
    LOOP: hand_written_loop,
    RESILIENT: resilient_retry,
    STACKED: resilient_stacked,
    "tenacity": tenacity_retry,
    "stamina": stamina_retry,
    BACKOFF: backoff_retry,
}


def disable_logging() -> None:
    """Turn off every library's per-retry instrumentation, as resilient has none by default.

    stamina logs a warning for every scheduled retry unless its hooks are emptied; backoff's is
    turned off with ``logger=None`` above; tenacity and resilient (with no observers) log nothing.
    """
    stamina.instrumentation.set_on_retry_hooks([])


# -- scenarios -----------------------------------------------------------------------------------


class Server(Protocol):
    """Where a Redis scenario's commands are counted: a `cache.RedisServer`, or `lock.Masters`."""

    def watch(self, calls: int, make_calls: Callable[[], object]) -> cache.Commands: ...

    def snapshot(self, *, before: bool) -> cache.Snapshot: ...


class Scenario(NamedTuple):
    """One thing measured: a function, the candidates that decorate it, and their baseline."""

    label: str
    mode: str  # "sync" or "async"
    function: Function
    candidates: Mapping[str, Decorate]
    baseline: str  # the candidate every ratio of this scenario is taken to
    verify: Verify
    fresh: bool = False  # each call with an argument never used before: a cache miss
    server: Server | None = None  # when set, count each candidate's commands
    text: bool = False  # each argument passed as a string (an idempotency key), not an int


Verify: TypeAlias = Callable[[Scenario, str, asyncio.Runner], None]


def verify_retry(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate does the same work as the others before timing it.

    The success path returns the value after one call; the failing path makes exactly three
    attempts (one for the bare call) and lets the original ConnectionError out.
    """
    calls = 0

    def count(value: int) -> int:
        nonlocal calls
        calls += 1
        result: int = scenario.function(value)
        return result

    async def acount(value: int) -> int:
        nonlocal calls
        calls += 1
        result: int = await scenario.function(value)
        return result

    counted = acount if scenario.mode == "async" else count
    decorated = scenario.candidates[name](counted)

    async def await_call() -> Any:
        return await decorated(7)

    outcome: object
    try:
        outcome = runner.run(await_call()) if scenario.mode == "async" else decorated(7)
    except ConnectionError as exc:
        outcome = exc
    if scenario.label.startswith("success"):
        assert outcome == 7, f"{name}: {scenario.label} gave {outcome!r}, not 7"
    else:
        assert isinstance(outcome, ConnectionError), f"{name}: {scenario.label} gave {outcome!r}"
        assert outcome.args == (7,), f"{name}: raised {outcome!r}, not the original exception"
    expected = ATTEMPTS if scenario.label.startswith("failure") and name != BARE else 1
    assert calls == expected, f"{name}: {scenario.label} made {calls} calls, not {expected}"
    if name == STACKED:
        wrapper = resilient_stacked(counted)
        assert getattr(wrapper, "__wrapped__", None) is counted, "stacking did not fuse"


def verify_cache(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate answers like the function and runs it only on a miss."""
    cache.check_caching(
        name,
        scenario.label,
        scenario.candidates[name],
        scenario.function,
        runner,
        fresh=scenario.fresh,
    )


def retry_scenario(label: str, function: Function) -> Scenario:
    mode = "async" if inspect.iscoroutinefunction(function) else "sync"
    return Scenario(label, mode, function, CANDIDATES, BARE, verify_retry)


RETRY_SCENARIOS = (
    retry_scenario("success sync", succeed),
    retry_scenario("success async", asucceed),
    retry_scenario("failure sync", fail),
    retry_scenario("failure async", afail),
)
SUCCESS_SYNC, SUCCESS_ASYNC, FAILURE_SYNC, FAILURE_ASYNC = (s.label for s in RETRY_SCENARIOS)


def verify_breaker(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate is a real breaker that answers like the function when closed."""
    breaker.check_breaking(name, scenario.candidates[name], scenario.function, runner)


CLOSED_SYNC, CLOSED_ASYNC = "closed sync", "closed async"
BREAKER_SCENARIOS = (
    Scenario(CLOSED_SYNC, "sync", succeed, breaker.SYNC_CANDIDATES, BARE, verify_breaker),
    Scenario(CLOSED_ASYNC, "async", asucceed, breaker.ASYNC_CANDIDATES, BARE, verify_breaker),
)

REDIS_CLOSED_SYNC, REDIS_CLOSED_ASYNC = "redis breaker closed sync", "redis breaker closed async"


def shared_breaker_scenarios(
    candidates: breaker.SharedCandidates, server: cache.RedisServer
) -> list[Scenario]:
    """Return the shared breaker scenarios on *server*: closed, ratios to a bare call."""
    return [
        Scenario(
            REDIS_CLOSED_SYNC,
            "sync",
            succeed,
            candidates.sync(),
            BARE,
            verify_breaker,
            server=server,
        ),
        Scenario(
            REDIS_CLOSED_ASYNC,
            "async",
            asucceed,
            candidates.asynchronous(),
            BARE,
            verify_breaker,
            server=server,
        ),
    ]


HIT_SYNC, HIT_ASYNC = "hit sync", "hit async"
REDIS_HIT_SYNC, REDIS_HIT_ASYNC = "redis hit sync", "redis hit async"
REDIS_MISS_SYNC, REDIS_MISS_ASYNC = "redis miss+set sync", "redis miss+set async"


def cache_scenarios(candidates: cache.Candidates, server: cache.RedisServer) -> list[Scenario]:
    """Return the memory hit scenarios, then the Redis ones on *server*."""
    redis_sync, redis_async = candidates.redis_sync(), candidates.redis_async()
    return [
        Scenario(HIT_SYNC, "sync", succeed, cache.MEMORY_SYNC, BARE, verify_cache),
        Scenario(HIT_ASYNC, "async", asucceed, candidates.memory_async(), BARE, verify_cache),
        Scenario(
            REDIS_HIT_SYNC, "sync", cache.profile, redis_sync, RAW, verify_cache, server=server
        ),
        Scenario(
            REDIS_HIT_ASYNC, "async", cache.aprofile, redis_async, RAW, verify_cache, server=server
        ),
        Scenario(
            REDIS_MISS_SYNC,
            "sync",
            cache.profile,
            redis_sync,
            RAW,
            verify_cache,
            fresh=True,
            server=server,
        ),
        Scenario(
            REDIS_MISS_ASYNC,
            "async",
            cache.aprofile,
            redis_async,
            RAW,
            verify_cache,
            fresh=True,
            server=server,
        ),
    ]


def verify_lock(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate answers like the function and that it really excludes."""
    lock.check_locking(name, scenario.candidates[name], scenario.function, runner)


LOCK_SYNC, LOCK_ASYNC = "redis lock sync", "redis lock async"


def lock_scenarios(candidates: lock.Candidates, masters: lock.Masters) -> list[Scenario]:
    """Return the uncontended lock scenarios: one acquire+release per call, ratios to raw."""
    return [
        Scenario(LOCK_SYNC, "sync", succeed, candidates.sync(), RAW, verify_lock, server=masters),
        Scenario(
            LOCK_ASYNC,
            "async",
            asucceed,
            candidates.asynchronous(),
            RAW,
            verify_lock,
            server=masters,
        ),
    ]


def verify_idempotency(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate answers like the function and runs it once per key."""
    idempotency.check_idempotent(
        name, scenario.label, scenario.candidates[name], scenario.function, runner
    )


IDEMPOTENT_FIRST_SYNC = "redis idempotent first call sync"
IDEMPOTENT_FIRST_ASYNC = "redis idempotent first call async"
IDEMPOTENT_REPLAY_SYNC = "redis idempotent replay sync"
IDEMPOTENT_REPLAY_ASYNC = "redis idempotent replay async"
IDEMPOTENT_LABELS = (
    IDEMPOTENT_FIRST_SYNC,
    IDEMPOTENT_FIRST_ASYNC,
    IDEMPOTENT_REPLAY_SYNC,
    IDEMPOTENT_REPLAY_ASYNC,
)


def idempotency_scenarios(
    candidates: idempotency.Candidates, server: cache.RedisServer
) -> list[Scenario]:
    """Return the idempotency scenarios: first calls (a new key each) and replays, to raw."""
    functions = {"sync": idempotency.create_order, "async": idempotency.acreate_order}
    paths = [
        (IDEMPOTENT_FIRST_SYNC, "sync", candidates.first_sync(), True),
        (IDEMPOTENT_FIRST_ASYNC, "async", candidates.first_async(), True),
        (IDEMPOTENT_REPLAY_SYNC, "sync", candidates.replay_sync(), False),
        (IDEMPOTENT_REPLAY_ASYNC, "async", candidates.replay_async(), False),
    ]
    return [
        Scenario(
            label,
            kind,
            functions[kind],
            made,
            RAW,
            verify_idempotency,
            fresh=fresh,
            server=server,
            text=True,
        )
        for label, kind, made, fresh in paths
    ]


RATE_ADMITTED_SYNC, RATE_ADMITTED_ASYNC = "rate limit admitted sync", "rate limit admitted async"
RATE_REFUSED_SYNC, RATE_REFUSED_ASYNC = "rate limit refused sync", "rate limit refused async"
RATE_DRAINING_SYNC = "rate limit admitted, draining sync"
RATE_MEMORY_LABELS = (
    RATE_ADMITTED_SYNC,
    RATE_ADMITTED_ASYNC,
    RATE_DRAINING_SYNC,
    RATE_REFUSED_SYNC,
    RATE_REFUSED_ASYNC,
)
REDIS_RATE_SYNC, REDIS_RATE_ASYNC = (
    "redis rate limit admitted sync",
    "redis rate limit admitted async",
)
REDIS_RATE_LABELS = (REDIS_RATE_SYNC, REDIS_RATE_ASYNC)


def verify_limiting(strict: Mapping[str, Decorate], *, admitting: bool) -> Verify:
    """Return the check of a rate-limit scenario; *strict*: its candidates, one call an hour."""

    def verify(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
        ratelimit.check_limiting(
            name,
            scenario.candidates[name],
            strict[name],
            scenario.function,
            runner,
            admitting=admitting,
        )

    return verify


def ratelimit_scenarios(
    admitting: ratelimit.Candidates,
    draining: ratelimit.Candidates,
    shared: ratelimit.Candidates,
    refusing: ratelimit.Candidates,
    server: cache.RedisServer,
) -> list[Scenario]:
    """Return the memory decisions (admitted, refused), then the admitted ones on Redis.

    *admitting* admits every call in memory from a full bucket, *draining* from a bucket never
    full again (the general decision), *shared* every call on Redis; *refusing* allows
    one call an hour: the refused scenarios, and every candidate's check that it limits.
    """
    scenarios = []
    memory, strict = admitting.memory(), refusing.memory()
    for label, kind, function in (
        (RATE_ADMITTED_SYNC, "sync", succeed),
        (RATE_ADMITTED_ASYNC, "async", asucceed),
    ):
        verify = verify_limiting(strict, admitting=True)
        scenarios.append(Scenario(label, kind, function, memory, BARE, verify))
    verify = verify_limiting(strict, admitting=True)
    scenarios.append(Scenario(RATE_DRAINING_SYNC, "sync", succeed, draining.memory(), BARE, verify))
    for label, kind, function in (
        (RATE_REFUSED_SYNC, "sync", succeed),
        (RATE_REFUSED_ASYNC, "async", asucceed),
    ):
        verify = verify_limiting(strict, admitting=False)
        scenarios.append(Scenario(label, kind, function, strict, BARE, verify))
    for label, kind, function, candidates, checks in (
        (REDIS_RATE_SYNC, "sync", succeed, shared.redis_sync(), refusing.redis_sync()),
        (REDIS_RATE_ASYNC, "async", asucceed, shared.redis_async(), refusing.redis_async()),
    ):
        verify = verify_limiting(checks, admitting=True)
        scenarios.append(Scenario(label, kind, function, candidates, RAW, verify, server=server))
    return scenarios


BULKHEAD_SYNC, BULKHEAD_ASYNC = "bulkhead admitted sync", "bulkhead admitted async"
REDIS_BULKHEAD_SYNC = "redis bulkhead shared admitted sync"
REDIS_BULKHEAD_ASYNC = "redis bulkhead shared admitted async"
REDIS_BULKHEAD_LABELS = (REDIS_BULKHEAD_SYNC, REDIS_BULKHEAD_ASYNC)


def verify_bounding(strict: Mapping[str, Decorate]) -> Verify:
    """Return the check of a bulkhead scenario; *strict*: its candidates with one slot."""

    def verify(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
        bulkhead.check_bounding(
            name, scenario.candidates[name], strict[name], scenario.function, runner
        )

    return verify


def bulkhead_scenarios(
    candidates: bulkhead.Candidates, one: bulkhead.Candidates, server: cache.RedisServer
) -> list[Scenario]:
    """Return the uncontended bulkhead calls in one process, then shared ones on *server*."""
    scenarios = [
        Scenario(
            BULKHEAD_SYNC, "sync", succeed, candidates.sync(), BARE, verify_bounding(one.sync())
        ),
        Scenario(
            BULKHEAD_ASYNC,
            "async",
            asucceed,
            candidates.asynchronous(),
            BARE,
            verify_bounding(one.asynchronous()),
        ),
    ]
    verify = verify_bounding(one.shared())
    for label, kind, function in (
        (REDIS_BULKHEAD_SYNC, "sync", succeed),
        (REDIS_BULKHEAD_ASYNC, "async", asucceed),
    ):
        scenarios.append(
            Scenario(label, kind, function, candidates.shared(), RAW, verify, server=server)
        )
    return scenarios


def verify_pipeline(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
    """Check that the candidate's policies act, and that the pipeline is one wrapper."""
    pipeline.check_stacking(name, scenario.candidates[name], scenario.function, runner)


PIPELINE_SCENARIOS = (
    Scenario(pipeline.SYNC, "sync", succeed, pipeline.CANDIDATES, BARE, verify_pipeline),
    Scenario(pipeline.ASYNC, "async", asucceed, pipeline.CANDIDATES, BARE, verify_pipeline),
)


def dedupe_scenarios(
    candidates: dedupe.Candidates, fleet: dedupe.Fleet, *, quick: bool
) -> list[dedupe.Scenario]:
    """Return the dedupe scenarios: concurrent awaits, threads, and awaits in processes."""
    awaits = 100 if quick else 1_000
    share = 25 if quick else 250  # awaits per process
    return [
        dedupe.Scenario(f"{awaits:,} awaits", "async", awaits, candidates.asynchronous()),
        dedupe.Scenario("64 threads", "threads", 64, dedupe.THREAD_CANDIDATES),
        dedupe.Scenario(
            f"{fleet.processes} processes x {share} awaits",
            "processes",
            fleet.processes * share,
            fleet.candidates(quick=quick),
            baseline=dedupe.LOCAL,
        ),
    ]


# Every path shares one batch loop per mode: a try block costs nothing until something raises
# (CPython 3.11+), so the success path pays nothing for the handler the failure path needs, and
# iterating over the arguments costs every candidate of a scenario alike. What the handler lets
# pass: the failing function's error, and a rate limiter's refusal (ConnectionError is matched
# first, so the failing retry paths pay what they paid before the refusals were added).
EXPECTED = (ConnectionError, *ratelimit.REFUSALS)


def sync_batch(function: Function, arguments: Iterator[object]) -> int:
    """Call *function* with each argument, the collector off; return the nanoseconds it took."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for argument in arguments:
            try:
                function(argument)
            except EXPECTED:
                continue
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


async def async_batch(
    function: Callable[[Any], Awaitable[Any]], arguments: Iterator[object]
) -> int:
    """Await a call per argument inside the running loop, as sync_batch does."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for argument in arguments:
            try:
                await function(argument)
            except EXPECTED:
                continue
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


# arguments no call has used yet, for scenarios where every call must miss
FRESH = itertools.count(1_000_000)

# calls made while MONITOR counts a candidate's Redis commands
COUNTED_CALLS = 20


@dataclasses.dataclass
class Usage:
    """What a candidate's timed batches cost on the Redis server and in this process."""

    calls: int = 0
    commands: int = 0  # that the server ran, in Lua scripts too
    # CPU time per call in each batch, in nanoseconds
    client_cpu: list[float] = dataclasses.field(default_factory=list)
    server_cpu: list[float] = dataclasses.field(default_factory=list)

    def add(self, calls: int, cpu_ns: int, before: cache.Snapshot, after: cache.Snapshot) -> None:
        self.calls += calls
        self.commands += after.commands_since(before)
        self.client_cpu.append(cpu_ns / calls)
        self.server_cpu.append((after.cpu - before.cpu) * 1e9 / calls)


class Bench:
    """One candidate in one scenario: its decorated function, batch size and timings."""

    def __init__(self, scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
        self.scenario = scenario
        self.name = name
        self.function = scenario.candidates[name](scenario.function)
        self._runner = runner
        self.calls = 1
        self.per_call_ns: list[float] = []
        self.cpu_ns = 0
        self.commands: cache.Commands | None = None  # sent and run in scripts, from MONITOR
        # over the timed batches, for Redis scenarios: calls made, commands the server ran,
        # and the CPU time the server and this process used
        self.usage = Usage()

    def time_batch(self, calls: int) -> int:
        """Time a batch of *calls* calls; keep the CPU time it took in ``cpu_ns``."""
        gc.collect()  # garbage left by the previous batch is not this one's to pay for
        numbers = (
            itertools.islice(FRESH, calls) if self.scenario.fresh else itertools.repeat(1, calls)
        )
        # a string per call for every candidate alike, made as the batch runs
        arguments: Iterator[object] = map(str, numbers) if self.scenario.text else numbers
        cpu = time.process_time_ns()
        if self.scenario.mode == "sync":
            elapsed = sync_batch(self.function, arguments)
        else:
            batch: Coroutine[Any, Any, int] = async_batch(self.function, arguments)
            elapsed = self._runner.run(batch)
        self.cpu_ns = time.process_time_ns() - cpu
        return elapsed

    def calibrate(self, batch_ns: int) -> None:
        """Warm up, and size the batch so that it takes about *batch_ns*."""
        calls = 16
        # The first calls pay once for what every later call reuses: a connection, a shared
        # breaker's first read of its state (a few ms together). A batch sized on them came
        # out a hundred times too small, and the batched sync it then paid for in nearly every
        # batch was spread over 40 calls instead of thousands.
        self.time_batch(calls)
        while (elapsed := self.time_batch(calls)) < batch_ns // 4:
            calls *= 2
        self.calls = max(1, calls * batch_ns // max(elapsed, 1))
        self.time_batch(self.calls)
        server = self.scenario.server
        if server is not None:
            self.commands = server.watch(COUNTED_CALLS, lambda: self.time_batch(COUNTED_CALLS))

    def measure(self) -> None:
        server = self.scenario.server
        before = None if server is None else server.snapshot(before=True)
        self.per_call_ns.append(self.time_batch(self.calls) / self.calls)
        if server is not None and before is not None:
            self.usage.add(self.calls, self.cpu_ns, before, server.snapshot(before=False))

    @property
    def best_ns(self) -> float:
        # Other work on a shared machine can only ever add time to a batch, never take it away,
        # so the fastest of many short batches is the closest estimate of the candidate's own
        # cost; on a loaded two-core machine it is also far steadier from run to run than the
        # median (see docs/benchmarks.md).
        return min(self.per_call_ns)


# -- running and reporting -----------------------------------------------------------------------


class Results(NamedTuple):
    scenarios: list[Scenario]
    benches: dict[tuple[str, str], Bench]  # (scenario label, candidate) -> bench
    contended: lock.Contended | None = None
    # each contended candidate's rounds: the commands Redis ran, by name (CommandLog)
    contended_commands: Mapping[str, Sequence[collections.Counter[str]]] | None = None
    dedupe: dedupe.Results | None = None

    def ratio(self, label: str, name: str, to: str | None = None) -> float:
        benches = self.benches
        baseline = to or benches[label, name].scenario.baseline
        return benches[label, name].best_ns / benches[label, baseline].best_ns

    def noise(self, label: str, name: str) -> float:
        """How much slower the median batch was than the fastest: the machine's noise."""
        bench = self.benches[label, name]
        return statistics.median(bench.per_call_ns) / bench.best_ns - 1


def run(rounds: int, batch_ms: float, runner: asyncio.Runner, scenarios: list[Scenario]) -> Results:
    disable_logging()
    resilient.reset_defaults()  # system clock, no observers, testing mode off
    benches = {}
    for scenario in scenarios:
        for name in scenario.candidates:
            scenario.verify(scenario, name, runner)
            benches[scenario.label, name] = Bench(scenario, name, runner)
    order = list(benches.values())
    # Everything made so far (modules, clients, the decorated functions) lives to the end:
    # frozen, it is left out of the collection before each batch, which then looks at the
    # batches' own garbage only (a full collection of it all took 35 ms).
    gc.collect()
    gc.freeze()
    try:
        for bench in order:
            bench.calibrate(int(batch_ms * 1e6))
        # Round-robin: every round times one batch of every candidate in every scenario, so a
        # slow spell on the machine hits all of them alike. Each round starts one place further
        # along, so no candidate always runs right after the same neighbour.
        for index in range(rounds):
            shift = index % len(order)
            for bench in order[shift:] + order[:shift]:
                bench.measure()
    finally:
        gc.unfreeze()
    return Results(scenarios, benches)


class CommandLog:
    """The server, to `lock.contend`: keeps the commands each round made Redis run, by name.

    `lock.contend` reads the server's counters right before and right after every round (and
    counts only their total); this keeps each round's difference by command, in the order the
    rounds ran.
    """

    def __init__(self, server: cache.RedisServer) -> None:
        self.server = server
        self.rounds: list[collections.Counter[str]] = []
        self._before: cache.Snapshot | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def snapshot(self, *, before: bool) -> cache.Snapshot:
        snapshot = self.server.snapshot(before=before)
        if before:
            self._before = snapshot
        else:
            assert self._before is not None
            self.rounds.append(snapshot.commands - self._before.commands)
        return snapshot

    def by_candidate(self, contended: lock.Contended) -> dict[str, list[collections.Counter[str]]]:
        """Return each candidate's rounds' commands, in the order of ``contended.rounds``.

        The rounds ran in `lock.contend`'s order (each round of candidates starts one place
        further along `lock.CONTENDED`); each round's total must match the one it counted.
        """
        rounds = len(next(iter(contended.rounds.values())))
        candidates = lock.CONTENDED
        order = [
            name
            for index in range(rounds)
            for name in candidates[index % len(candidates) :]
            + candidates[: index % len(candidates)]
        ]
        assert len(order) == len(self.rounds), "a round of lock.contend was not logged"
        logged: dict[str, list[collections.Counter[str]]] = {name: [] for name in contended.rounds}
        for name, commands in zip(order, self.rounds, strict=True):
            round_ = contended.rounds[name][len(logged[name])]
            assert commands.total() == round_.commands, (
                "lock.contend ran its rounds in another order"
            )
            logged[name].append(commands)
        return logged


class Target(NamedTuple):
    """A budget: *candidate* costs at most (or at least) *limit* times *baseline*."""

    label: str
    candidate: str
    baseline: str
    limit: float
    at_most: bool

    def applies(self, results: Results) -> bool:
        return (self.label, self.candidate) in results.benches

    def check(self, results: Results) -> tuple[bool, str]:
        value = results.ratio(self.label, self.candidate, to=self.baseline)
        holds = value <= self.limit if self.at_most else value >= self.limit
        sign = "<=" if self.at_most else ">="
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  {self.label}: {self.candidate} = "
            f"{value:.2f}x {self.baseline} (target {sign} {self.limit:g}x)"
        )


class CommandTarget(NamedTuple):
    """A budget of Redis commands: *candidate* sends exactly *commands* per call."""

    label: str
    candidate: str
    commands: int

    def applies(self, results: Results) -> bool:
        return (self.label, self.candidate) in results.benches

    def check(self, results: Results) -> tuple[bool, str]:
        counted = results.benches[self.label, self.candidate].commands
        assert counted is not None, f"{self.label} counts no commands"
        value = counted.per_call()
        holds = value == self.commands
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  {self.label}: {self.candidate} sends {value:g} "
            f"command{'' if value == 1 else 's'} per call ({counted.names()}; "
            f"target {self.commands})"
        )


class AmortizedCommands(NamedTuple):
    """A budget of Redis commands: *candidate* makes Redis run at most *limit* per call.

    Counted over every timed batch (the server's own command statistics), so that work done
    once in a while, such as a batched sync, is spread over the calls it served.
    """

    label: str
    candidate: str
    limit: float

    def applies(self, results: Results) -> bool:
        return (self.label, self.candidate) in results.benches

    def check(self, results: Results) -> tuple[bool, str]:
        usage = results.benches[self.label, self.candidate].usage
        value = usage.commands / max(usage.calls, 1)
        holds = value <= self.limit
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  {self.label}: {self.candidate} makes Redis run "
            f"{value:.2g} commands per call over {usage.calls} calls (target <= {self.limit:g})"
        )


class ThroughputTarget(NamedTuple):
    """Contended: *candidate* takes the lock at least *limit* times as often as *baseline*."""

    candidate: str
    baseline: str
    limit: float

    def applies(self, results: Results) -> bool:
        return results.contended is not None

    def check(self, results: Results) -> tuple[bool, str]:
        contended = results.contended
        assert contended is not None
        value, floor = contended.best(self.candidate), contended.best(self.baseline)
        holds = value >= self.limit * floor
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  contended lock, {lock.PROCESSES} processes: "
            f"{self.candidate} = {value:.0f} acquisitions/s, {value / floor:.2f}x "
            f"{self.baseline} ({floor:.0f}/s; target >= {self.limit:g}x)"
        )


class DedupeTarget(NamedTuple):
    """Dedupe: *candidate* serves every caller at most *limit* times as slowly as the baseline.

    In the scenario of *mode*, with the function run *executions* times for all the callers.
    """

    mode: str
    candidate: str
    limit: float
    executions: int = 1

    def _scenario(self, results: Results) -> dedupe.Scenario | None:
        if results.dedupe is None:
            return None
        return next((s for s in results.dedupe.scenarios if s.mode == self.mode), None)

    def applies(self, results: Results) -> bool:
        return self._scenario(results) is not None

    def check(self, results: Results) -> tuple[bool, str]:
        scenario = self._scenario(results)
        assert scenario is not None
        assert results.dedupe is not None
        best = results.dedupe.benches[scenario.label, self.candidate].best
        ratio = results.dedupe.ratio(scenario.label, self.candidate)
        holds = ratio is not None and ratio <= self.limit and best.executions == self.executions
        measured = "failed" if ratio is None else f"{ratio:.2f}x {scenario.baseline}"
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  dedupe {scenario.label}: {self.candidate} = "
            f"{best.seconds * 1000:.1f} ms, {measured}, {best.executions} execution"
            f"{'' if best.executions == 1 else 's'} ({best.describe(scenario.callers)}; "
            f"target <= {self.limit:g}x, {self.executions} execution)"
        )


class FleetTarget(NamedTuple):
    """Dedupe across processes: *candidate* runs the function *executions* times in all, and
    serves every caller of every process within the function's time plus *margin* seconds.

    The wall time runs from the first process's release from the barrier; the processes are
    not all released at the same instant, and a process released late can only add that
    lateness (the trial's "release spread", measured) to the wall time, so it is allowed on
    top of the margin, and printed.
    """

    candidate: str
    margin: float
    executions: int = 1

    def _scenario(self, results: Results) -> dedupe.Scenario | None:
        if results.dedupe is None:
            return None
        return next((s for s in results.dedupe.scenarios if s.mode == "processes"), None)

    def applies(self, results: Results) -> bool:
        return self._scenario(results) is not None

    def check(self, results: Results) -> tuple[bool, str]:
        scenario = self._scenario(results)
        assert scenario is not None
        assert results.dedupe is not None
        best = results.dedupe.benches[scenario.label, self.candidate].best
        limit = dedupe.WORK + self.margin + best.skew
        holds = not best.failed and best.executions == self.executions and best.seconds <= limit
        after = "" if best.landed is None else f", {(best.seconds - best.landed) * 1000:.1f} ms"
        if after:
            after += " of it after the execution returned"
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  dedupe {scenario.label}: {self.candidate} = "
            f"{best.seconds * 1000:.1f} ms, {best.executions} execution"
            f"{'' if best.executions == 1 else 's'} ({best.describe(scenario.callers)}); "
            f"{(best.seconds - dedupe.WORK) * 1000:.1f} ms over the function's "
            f"{dedupe.WORK * 1000:g} ms{after} (target {self.executions} execution, <= "
            f"{dedupe.WORK * 1000:g} ms + {self.margin * 1000:g} ms + the release spread "
            f"{best.skew * 1000:.2f} ms = {limit * 1000:.1f} ms)"
        )


AnyTarget: TypeAlias = (
    Target
    | CommandTarget
    | AmortizedCommands
    | ThroughputTarget
    | DedupeTarget
    | FleetTarget
    | pipeline.OneWrapper
)

TARGETS: tuple[AnyTarget, ...] = (
    Target(SUCCESS_SYNC, RESILIENT, BARE, 15, at_most=True),
    Target(SUCCESS_ASYNC, RESILIENT, BARE, 20, at_most=True),
    # "at least 5x faster than backoff, the fastest anchor"
    Target(SUCCESS_SYNC, BACKOFF, RESILIENT, 5, at_most=False),
    Target(SUCCESS_ASYNC, BACKOFF, RESILIENT, 5, at_most=False),
    Target(FAILURE_SYNC, RESILIENT, LOOP, 3, at_most=True),
    Target(FAILURE_ASYNC, RESILIENT, LOOP, 3, at_most=True),
    Target(CLOSED_SYNC, breaker.BREAKER, BARE, 12, at_most=True),
    Target(CLOSED_ASYNC, breaker.BREAKER, BARE, 18, at_most=True),
    # "at least twice as fast as circuitbreaker, the fastest anchor"
    Target(CLOSED_SYNC, breaker.CIRCUITBREAKER, breaker.BREAKER, 2, at_most=False),
    Target(CLOSED_ASYNC, breaker.CIRCUITBREAKER, breaker.BREAKER, 2, at_most=False),
    # "shared closed path <= 1 command per call (aim: 0 amortised)"
    AmortizedCommands(REDIS_CLOSED_SYNC, breaker.SHARED, 0.01),
    AmortizedCommands(REDIS_CLOSED_ASYNC, breaker.SHARED, 0.01),
    Target(HIT_SYNC, cache.CACHED, BARE, 9, at_most=True),
    # "faster than cachetools": its decorator costs more than ours
    Target(HIT_SYNC, cache.CACHETOOLS_LRU, cache.CACHED, 1, at_most=False),
    Target(HIT_SYNC, cache.CACHETOOLS_TTL, cache.CACHED, 1, at_most=False),
    Target(HIT_ASYNC, cache.CACHED, BARE, 15, at_most=True),
    CommandTarget(REDIS_HIT_SYNC, cache.CACHED, 1),
    CommandTarget(REDIS_HIT_ASYNC, cache.CACHED, 1),
    CommandTarget(REDIS_MISS_SYNC, cache.CACHED, 2),
    CommandTarget(REDIS_MISS_ASYNC, cache.CACHED, 2),
    Target(REDIS_HIT_SYNC, cache.CACHED, cache.RAW, 1.1, at_most=True),
    Target(REDIS_HIT_ASYNC, cache.CACHED, cache.RAW, 1.1, at_most=True),
    Target(REDIS_MISS_SYNC, cache.CACHED, cache.RAW, 1.1, at_most=True),
    Target(REDIS_MISS_ASYNC, cache.CACHED, cache.RAW, 1.1, at_most=True),
    # "one command to acquire and one to release"
    CommandTarget(LOCK_SYNC, lock.LOCK, 2),
    CommandTarget(LOCK_ASYNC, lock.LOCK, 2),
    # "within 10-20% of the raw floor": the upper end
    Target(LOCK_SYNC, lock.LOCK, RAW, 1.2, at_most=True),
    Target(LOCK_ASYNC, lock.LOCK, RAW, 1.2, at_most=True),
    # "at least as many acquisitions per second as redis-py's Lock polling every millisecond"
    ThroughputTarget(lock.LOCK, lock.REDIS_PY_FAST, 1),
    # the runner's own: one execution for all the callers, close to a hand-written single flight
    DedupeTarget("async", dedupe.DEDUPED, 1.5),
    DedupeTarget("threads", dedupe.DEDUPED, 1.5),
    # "cross-process 1 execution with followers served within the leader's time + 20 ms"
    FleetTarget(dedupe.SHARED, 0.020),
    # "2 commands on a first call (claim+read, store), 1 on a replay"
    CommandTarget(IDEMPOTENT_FIRST_SYNC, idempotency.IDEMPOTENT, 2),
    CommandTarget(IDEMPOTENT_FIRST_ASYNC, idempotency.IDEMPOTENT, 2),
    CommandTarget(IDEMPOTENT_REPLAY_SYNC, idempotency.IDEMPOTENT, 1),
    CommandTarget(IDEMPOTENT_REPLAY_ASYNC, idempotency.IDEMPOTENT, 1),
    # "each path within 10% of the raw redis-py floor doing the same commands"
    Target(IDEMPOTENT_FIRST_SYNC, idempotency.IDEMPOTENT, RAW, 1.1, at_most=True),
    Target(IDEMPOTENT_FIRST_ASYNC, idempotency.IDEMPOTENT, RAW, 1.1, at_most=True),
    Target(IDEMPOTENT_REPLAY_SYNC, idempotency.IDEMPOTENT, RAW, 1.1, at_most=True),
    Target(IDEMPOTENT_REPLAY_ASYNC, idempotency.IDEMPOTENT, RAW, 1.1, at_most=True),
    # "memory decision <= 20x bare call (at least 5x faster than limits)": its fixed window
    Target(RATE_ADMITTED_SYNC, ratelimit.RATE_LIMITED, BARE, 20, at_most=True),
    Target(RATE_ADMITTED_ASYNC, ratelimit.RATE_LIMITED, BARE, 20, at_most=True),
    Target(RATE_ADMITTED_SYNC, ratelimit.LIMITS_FIXED, ratelimit.RATE_LIMITED, 5, at_most=False),
    Target(RATE_ADMITTED_ASYNC, ratelimit.LIMITS_FIXED, ratelimit.RATE_LIMITED, 5, at_most=False),
    # the same budgets, for a decision from a bucket that is not full (no fast path)
    Target(RATE_DRAINING_SYNC, ratelimit.RATE_LIMITED, BARE, 20, at_most=True),
    Target(RATE_DRAINING_SYNC, ratelimit.LIMITS_FIXED, ratelimit.RATE_LIMITED, 5, at_most=False),
    # "Redis 1 command per decision", within 10% of the floor doing the same (DESIGN.md §5)
    CommandTarget(REDIS_RATE_SYNC, ratelimit.RATE_LIMITED, 1),
    CommandTarget(REDIS_RATE_ASYNC, ratelimit.RATE_LIMITED, 1),
    Target(REDIS_RATE_SYNC, ratelimit.RATE_LIMITED, RAW, 1.1, at_most=True),
    Target(REDIS_RATE_ASYNC, ratelimit.RATE_LIMITED, RAW, 1.1, at_most=True),
    # "a pipeline costs what its decorators stacked by hand cost: one wrapper over its policies"
    Target(pipeline.SYNC, pipeline.PIPELINE, pipeline.HAND, 1.1, at_most=True),
    Target(pipeline.ASYNC, pipeline.PIPELINE, pipeline.HAND, 1.1, at_most=True),
    *pipeline.TARGETS,
)


def machine(server: cache.RedisServer | None) -> str:
    names = ["resilient", "wrapt", "tenacity", "stamina", "backoff"]
    names += ["circuitbreaker", "purgatory", "pybreaker", "aiobreaker"]
    if server is not None:
        names += ["cachetools", "dogpile.cache", "aiocache", "cashews", "redis", "hiredis"]
        names += ["python-redis-lock", "pottery", "aws-lambda-powertools", "limits"]
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"no {name}")
    if server is not None:
        versions.append(f"redis-server {server.version()}")
    return (
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {', '.join(versions)}"
    )


def render(rows: list[list[str]], *, markdown: bool) -> str:
    """Lay out *rows* (the first one the header) as text columns or a markdown table."""
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join(["---", *["---:"] * (len(rows[0]) - 1)]) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def ratio_table(results: Results, labels: list[str], *, markdown: bool) -> str:
    """The candidates of *labels* as rows, each scenario a column of ratios to its baseline."""
    names = list(dict.fromkeys(name for (label, name) in results.benches if label in labels))
    rows = [["candidate", *(f"{label} (x bare)" for label in labels)]]
    for name in names:
        cells = []
        for label in labels:
            if (label, name) not in results.benches:
                cells.append("-")
                continue
            cell = f"{results.ratio(label, name):.1f}"
            if not markdown:
                cell += f" +{results.noise(label, name):.0%}"
            cells.append(cell)
        rows.append([name, *cells])
    # absolute times vary with the machine's load; they are here to put the ratios in scale
    bare_ns = [f"{results.benches[label, BARE].best_ns:.0f} ns" for label in labels]
    rows.append(["(bare call, time per call)", *bare_ns])
    return render(rows, markdown=markdown)


def redis_table(results: Results, labels: list[str], *, markdown: bool) -> str:
    """One row per Redis scenario and candidate: its ratio, time and commands per call."""
    baselines = {s.baseline for s in results.scenarios if s.label in labels}
    assert len(baselines) == 1, f"one table, one baseline: {baselines}"
    rows = [
        [
            "scenario: candidate",
            f"x {baselines.pop()}",
            "time per call",
            "CPU per call: here / Redis",
            "commands sent per call",
            "commands Redis ran per call",
        ]
    ]
    for (label, name), bench in results.benches.items():
        if label not in labels:
            continue
        usage, commands = bench.usage, bench.commands
        assert commands is not None
        value = results.ratio(label, name)
        ratio = f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"  # a local-tier hit: ~0.004
        if not markdown:
            ratio += f" +{results.noise(label, name):.0%}"
        client_us, server_us = min(usage.client_cpu) / 1000, min(usage.server_cpu) / 1000
        ran = usage.commands / usage.calls
        rows.append(
            [
                f"{label}: {name}",
                ratio,
                _microseconds(bench.best_ns / 1000),
                f"{_microseconds(client_us)} / {_microseconds(server_us)}",
                f"{commands.per_call():g} ({commands.names()})",
                # a batched sync spread over thousands of calls: shown, not rounded to 0.0
                f"{ran:.1f}" if ran >= 0.1 or not ran else f"{ran:.2g}",
            ]
        )
    return render(rows, markdown=markdown)


def _microseconds(value: float) -> str:
    """Whole microseconds, or two significant digits below ten (a local-tier hit is ~0.3)."""
    return f"{value:.0f} us" if value >= 10 else f"{value:.2g} us"


def contended_table(contended: lock.Contended, *, markdown: bool) -> str:
    """One row per contended candidate: acquisitions per second, and how they were shared."""
    rows = [
        [
            "candidate",
            "acquisitions/s (best round)",
            "median round",
            f"x {lock.REDIS_PY_FAST}",
            "per process (best round)",
            "per process, fewest / most (any round)",
            "Redis commands per acquisition",
            "connections opened per acquisition",
            "two holders at once",
        ]
    ]
    floor = contended.best(lock.REDIS_PY_FAST)
    for name, rounds in contended.rounds.items():
        best = max(rounds, key=lock.Round.rate)
        every = [count for round_ in rounds for count in round_.acquisitions]
        rows.append(
            [
                name,
                f"{best.rate():.0f}",
                f"{contended.median(name):.0f}",
                f"{contended.best(name) / floor:.2f}" if floor else "-",
                " / ".join(str(count) for count in best.acquisitions),
                f"{min(every)} / {max(every)}",
                f"{best.per_acquisition(best.commands):.1f}",
                f"{best.per_acquisition(best.connections):.2f}",
                str(sum(round_.overlaps for round_ in rounds)),
            ]
        )
    return render(rows, markdown=markdown)


def dedupe_table(results: dedupe.Results, *, markdown: bool) -> str:
    """One row per dedupe scenario in one process and candidate: wall time, ratio, executions."""
    rows = [
        [
            "scenario: candidate",
            "wall time",
            f"x {dedupe.SINGLE_FLIGHT}",
            "beyond the work, per caller",
            "executions",
            "callers",
        ]
    ]
    for (label, name), bench in results.benches.items():
        if bench.scenario.mode == "processes":
            continue
        best = bench.best
        ratio = results.ratio(label, name)
        wall = f"{best.seconds * 1000:.1f} ms"
        if not markdown and len(bench.trials) > 1:
            wall += f" +{bench.noise():.0%}"
        rows.append(
            [
                f"{label}: {name}",
                wall,
                "-" if ratio is None else f"{ratio:.2f}",
                _microseconds((best.seconds - dedupe.WORK) * 1e6 / bench.scenario.callers),
                f"{best.executions:,}",
                best.describe(bench.scenario.callers),
            ]
        )
    return render(rows, markdown=markdown)


def fleet_table(results: dedupe.Results, *, markdown: bool) -> str:
    """One row per candidate of the scenarios across processes: wall time and its parts."""
    rows = [
        [
            "scenario: candidate",
            "wall time",
            f"x {dedupe.LOCAL}",
            f"over the function's {dedupe.WORK * 1000:g} ms",
            "last answer after the last execution returned",
            "release spread",
            "executions",
            "most at once",
            "callers",
        ]
    ]
    for (label, name), bench in results.benches.items():
        if bench.scenario.mode != "processes":
            continue
        best = bench.best
        ratio = results.ratio(label, name)
        wall = f"{best.seconds * 1000:.1f} ms"
        if not markdown and len(bench.trials) > 1:
            wall += f" +{bench.noise():.0%}"
        served = "-" if best.landed is None else f"{(best.seconds - best.landed) * 1000:.1f} ms"
        rows.append(
            [
                f"{label}: {name}",
                wall,
                "-" if ratio is None else f"{ratio:.2f}",
                f"{(best.seconds - dedupe.WORK) * 1000:.1f} ms",
                served,
                f"{best.skew * 1000:.2f} ms",
                f"{best.executions:,}",
                "-" if best.at_once is None else f"{best.at_once:,}",
                best.describe(bench.scenario.callers),
            ]
        )
    return render(rows, markdown=markdown)


def report(results: Results, *, markdown: bool) -> list[str]:
    """Return the tables for the scenarios that ran, each with a heading line."""
    ran = [scenario.label for scenario in results.scenarios]
    retry = [label for label in ran if label in {s.label for s in RETRY_SCENARIOS}]
    closed = [label for label in ran if label in {s.label for s in BREAKER_SCENARIOS}]
    memory = [label for label in ran if label in (HIT_SYNC, HIT_ASYNC)]
    shared = [label for label in ran if label.startswith("redis breaker")]
    locks = [label for label in ran if label in (LOCK_SYNC, LOCK_ASYNC)]
    idempotent = [label for label in ran if label in IDEMPOTENT_LABELS]
    limited = [label for label in ran if label in RATE_MEMORY_LABELS]
    redis_limited = [label for label in ran if label in REDIS_RATE_LABELS]
    bounded = [label for label in ran if label in (BULKHEAD_SYNC, BULKHEAD_ASYNC)]
    redis_bounded = [label for label in ran if label in REDIS_BULKHEAD_LABELS]
    piped = [label for label in ran if label in pipeline.LABELS]
    redis = [
        label
        for label in ran
        if label.startswith("redis")
        and label not in shared
        and label not in locks
        and label not in idempotent
        and label not in redis_limited
        and label not in redis_bounded
    ]
    heading = "### " if markdown else "== "
    parts = []
    if retry:
        parts.append(f"{heading}retry\n\n{ratio_table(results, retry, markdown=markdown)}")
    if closed:
        parts.append(
            f"{heading}circuit breaker, closed\n\n{ratio_table(results, closed, markdown=markdown)}"
        )
    if memory:
        parts.append(
            f"{heading}memory cache hit\n\n{ratio_table(results, memory, markdown=markdown)}"
        )
    if redis:
        parts.append(f"{heading}Redis cache\n\n{redis_table(results, redis, markdown=markdown)}")
    if shared:
        table = redis_table(results, shared, markdown=markdown)
        parts.append(f"{heading}Redis breaker, closed\n\n{table}")
    if locks:
        table = redis_table(results, locks, markdown=markdown)
        parts.append(f"{heading}Redis lock, uncontended acquire+release\n\n{table}")
    if idempotent:
        table = redis_table(results, idempotent, markdown=markdown)
        parts.append(f"{heading}Redis idempotency: first call and replay\n\n{table}")
    if limited:
        table = ratio_table(results, limited, markdown=markdown)
        parts.append(f"{heading}rate limit decision, in memory\n\n{table}")
    if redis_limited:
        table = redis_table(results, redis_limited, markdown=markdown)
        parts.append(f"{heading}Redis rate limit, admitted decision\n\n{table}")
    if bounded:
        table = ratio_table(results, bounded, markdown=markdown)
        parts.append(f"{heading}bulkhead, uncontended admission\n\n{table}")
    if redis_bounded:
        table = redis_table(results, redis_bounded, markdown=markdown)
        parts.append(f"{heading}Redis bulkhead (shared=True), uncontended admission\n\n{table}")
    if piped:
        table = ratio_table(results, piped, markdown=markdown)
        parts.append(f"{heading}pipeline of timeout + retry + breaker, success path\n\n{table}")
    if results.contended is not None:
        table = contended_table(results.contended, markdown=markdown)
        title = (
            f"Redis lock, contended: {lock.PROCESSES} processes, one name, "
            f"{results.contended.seconds:g} s per round"
        )
        parts.append(f"{heading}{title}\n\n{table}")
    if results.dedupe is not None:
        table = dedupe_table(results.dedupe, markdown=markdown)
        title = f"dedupe: concurrent callers of one {dedupe.WORK * 1000:g} ms function, one key"
        parts.append(f"{heading}{title}\n\n{table}")
        if any(scenario.mode == "processes" for scenario in results.dedupe.scenarios):
            table = fleet_table(results.dedupe, markdown=markdown)
            title = (
                f"dedupe across processes: callers of one {dedupe.WORK * 1000:g} ms function, "
                "one key, released together by a barrier"
            )
            parts.append(f"{heading}{title}\n\n{table}")
    return parts


def info(results: Results) -> list[str]:
    """Return the figures that explain the targets' figures."""
    lines = []
    for label in (SUCCESS_SYNC, SUCCESS_ASYNC):
        if (label, STACKED) in results.benches:
            stacked = results.ratio(label, STACKED, to=RESILIENT)
            lines.append(f"info  {label}: {STACKED} = {stacked:.2f}x {RESILIENT}")
    for label in (HIT_SYNC, HIT_ASYNC):
        if (label, cache.CACHED) in results.benches:
            floor = results.ratio(label, cache.WRAPPER)
            lines.append(
                f"info  {label}: {cache.CACHED} = {results.ratio(label, cache.CACHED):.2f}x "
                f"{BARE}, of which {cache.WRAPPER} = {floor:.2f}x"
            )
    # what each contended acquisition made Redis run, in scripts too: the best round's
    if results.contended is not None and results.contended_commands is not None:
        for name, rounds in results.contended.rounds.items():
            index = max(range(len(rounds)), key=lambda i: rounds[i].rate())
            acquisitions = max(sum(rounds[index].acquisitions), 1)
            counts = results.contended_commands[name][index].most_common()
            per = ", ".join(
                f"{command} {count / acquisitions:.2f}"
                for command, count in counts
                if count / acquisitions >= 0.01
            )
            lines.append(f"info  contended {name}, commands per acquisition (best round): {per}")
    # across processes, every trial of the shared flight, not only the fastest
    if results.dedupe is not None:
        for (label, name), bench in results.dedupe.benches.items():
            if bench.scenario.mode == "processes" and name == dedupe.SHARED:
                trials = ", ".join(
                    f"{trial.seconds * 1000:.1f} ms ({trial.executions}, {trial.skew * 1000:.1f})"
                    for trial in bench.trials
                )
                lines.append(
                    f"info  {label}: {name}, every trial (executions, release spread in ms): "
                    f"{trials}"
                )
    # the raw floor is two round trips: what each lock costs in round trips of this machine
    for label in (LOCK_SYNC, LOCK_ASYNC):
        if (label, RAW) not in results.benches:
            continue
        for scenario, name in results.benches:
            if scenario == label and name != RAW:
                trips = 2 * results.ratio(label, name)
                lines.append(f"info  {label}: {name} = {trips:.1f} round trips of {RAW}")
    # what an idempotent call spends beyond the floor's, here and in Redis: where a ratio goes
    for label in IDEMPOTENT_LABELS:
        if (label, RAW) not in results.benches:
            continue
        raw = results.benches[label, RAW].usage
        for scenario, name in results.benches:
            if scenario != label or name in (RAW, BARE):
                continue
            usage = results.benches[label, name].usage
            here = (min(usage.client_cpu) - min(raw.client_cpu)) / 1000
            there = (min(usage.server_cpu) - min(raw.server_cpu)) / 1000
            ran = usage.commands / usage.calls - raw.commands / raw.calls
            lines.append(
                f"info  {label}: {name} = {results.ratio(label, name):.2f}x {RAW}; per call "
                f"{here:+.0f} us CPU here, {there:+.1f} us CPU in Redis, {ran:+.1f} commands "
                "Redis ran"
            )
    return lines


PARTS = (
    "retry",
    "breaker",
    "cache",
    "lock",
    "dedupe",
    "idempotency",
    "ratelimit",
    "bulkhead",
    "pipeline",
)


def measurements(results: Results, part_of: Mapping[str, str]) -> list[plot.Measurement]:
    """Return every ratio the tables show, by part in the order of PARTS, for the figure.

    *part_of* names the part of each timed scenario. A contended lock's ratio is its time per
    acquisition (the inverse of its acquisitions per second) over the poller's, so that, as in
    every other part, lower is better.
    """
    made = [
        plot.Measurement(
            part_of[label], label, bench.scenario.baseline, name, results.ratio(label, name)
        )
        for (label, name), bench in results.benches.items()
    ]
    if results.contended is not None:
        contended, label = results.contended, f"contended, {lock.PROCESSES} processes"
        floor = contended.best(lock.REDIS_PY_FAST)
        for name in contended.rounds:
            rate = contended.best(name)
            ratio = floor / rate if rate and floor else None
            made.append(plot.Measurement("lock", label, lock.REDIS_PY_FAST, name, ratio))
    if results.dedupe is not None:
        made += [
            plot.Measurement(
                "dedupe", label, bench.scenario.baseline, name, results.dedupe.ratio(label, name)
            )
            for (label, name), bench in results.dedupe.benches.items()
        ]
    return sorted(made, key=lambda measurement: PARTS.index(measurement.part))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: a smoke test")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--rounds", type=int, help="rounds of batches (default 40; quick 3)")
    parser.add_argument("--only", choices=PARTS, help="run one part only")
    parser.add_argument("--json", type=Path, help="also write every ratio to this JSON file")
    parser.add_argument("--plot", type=Path, help="also draw every ratio into this PNG file")
    parser.add_argument(
        "--from",
        dest="saved",
        type=Path,
        help="measure nothing: draw --plot from the ratios that --json wrote to this file",
    )
    args = parser.parse_args(argv)
    if args.saved is not None:
        if args.plot is None:
            parser.error("--from draws a figure: give --plot too")
        saved, caption = plot.load(args.saved)
        plot.draw(args.plot, saved, caption=caption)
        return 0
    rounds = args.rounds or (3 if args.quick else 40)
    batch_ms = 2.0 if args.quick else 10.0
    parts = [args.only] if args.only else list(PARTS)
    # contended locks: rounds of this many seconds; dedupe: rounds of one trial per candidate
    contended_seconds, contended_rounds = (0.25, 1) if args.quick else (2.0, 3)
    dedupe_rounds, dedupe_timeout = (1, 20.0) if args.quick else (5, 60.0)

    with contextlib.ExitStack() as stack:
        server = masters = None
        if {"cache", "breaker", "lock", "dedupe", "idempotency", "ratelimit", "bulkhead"} & set(
            parts
        ):
            try:
                server = stack.enter_context(cache.RedisServer())
                masters = stack.enter_context(lock.Masters(server)) if "lock" in parts else None
            except cache.RedisUnavailableError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        print(machine(server))
        if parts != ["dedupe"]:
            print(f"{rounds} rounds, batches of ~{batch_ms:g} ms, fastest batch")
        if "lock" in parts:
            print(
                f"contended lock: {contended_rounds} round(s) of {contended_seconds:g} s per "
                "candidate, best round"
            )
        if "dedupe" in parts:
            print(f"dedupe: {dedupe_rounds} trial(s) per candidate, fastest trial")
        if not args.markdown:
            print("(+N%: how much slower the median batch was, i.e. the machine's noise)")
        print()
        runner = stack.enter_context(asyncio.Runner())
        # each part's scenarios: the figure groups the ratios by part
        scenarios: dict[str, list[Scenario]] = collections.defaultdict(list)
        if "retry" in parts:
            scenarios["retry"] += RETRY_SCENARIOS
        if "breaker" in parts:
            scenarios["breaker"] += BREAKER_SCENARIOS
        if "pipeline" in parts:
            scenarios["pipeline"] += PIPELINE_SCENARIOS
        if server is not None and "breaker" in parts:
            shared = breaker.SharedCandidates(server.url)
            stack.callback(shared.close, runner)
            scenarios["breaker"] += shared_breaker_scenarios(shared, server)
        if server is not None and "cache" in parts:
            candidates = cache.Candidates(server.url)
            stack.callback(candidates.close, runner)
            scenarios["cache"] += cache_scenarios(candidates, server)
        if masters is not None:
            locks = lock.Candidates(masters)
            stack.callback(locks.close, runner)
            scenarios["lock"] += lock_scenarios(locks, masters)
        if server is not None and "idempotency" in parts:
            idempotent = idempotency.Candidates(server.url)
            stack.callback(idempotent.close, runner)
            scenarios["idempotency"] += idempotency_scenarios(idempotent, server)
        if server is not None and "ratelimit" in parts:
            admitting = ratelimit.Candidates(ratelimit.ADMITTING)
            draining = ratelimit.Candidates(ratelimit.DRAINING)
            shared_limits = ratelimit.Candidates(ratelimit.REDIS_ADMITTING, server.url)
            refusing = ratelimit.Candidates(ratelimit.REFUSING, server.url)
            for made in (admitting, draining, shared_limits, refusing):
                stack.callback(made.close, runner)
            scenarios["ratelimit"] += ratelimit_scenarios(
                admitting, draining, shared_limits, refusing, server
            )
        if server is not None and "bulkhead" in parts:
            bounding = bulkhead.Candidates(bulkhead.MAX_CONCURRENT, server.url)
            one = bulkhead.Candidates(1, server.url)
            stack.callback(bounding.close, runner)
            stack.callback(one.close, runner)
            scenarios["bulkhead"] += bulkhead_scenarios(bounding, one, server)
        timed = [scenario for made in scenarios.values() for scenario in made]
        results = run(rounds, batch_ms, runner, timed) if timed else Results([], {})
        if server is not None and "lock" in parts:
            log = CommandLog(server)
            contended = lock.contend(
                cast(cache.RedisServer, log), seconds=contended_seconds, rounds=contended_rounds
            )
            results = results._replace(
                contended=contended, contended_commands=log.by_candidate(contended)
            )
        if server is not None and "dedupe" in parts:
            shared_calls = dedupe.Candidates(server.url)
            stack.callback(shared_calls.close, runner)
            fleet = dedupe.Fleet(server.url)
            stack.callback(fleet.close)  # before the server stops: the callbacks run last first
            dedupe_results = dedupe.run(
                dedupe_scenarios(shared_calls, fleet, quick=args.quick),
                dedupe_rounds,
                runner,
                timeout=dedupe_timeout,
            )
            results = results._replace(dedupe=dedupe_results)
        caption = (
            f"{machine(server).split(';')[0]}; resilient {resilient.__version__}; "
            f"{'--quick, ' if args.quick else ''}{rounds} rounds of ~{batch_ms:g} ms batches"
        )
    ratios = measurements(
        results, {scenario.label: part for part, made in scenarios.items() for scenario in made}
    )
    if args.json is not None:
        plot.save(args.json, ratios, caption=caption)
    if args.plot is not None:
        plot.draw(args.plot, ratios, caption=caption)
    for part in report(results, markdown=args.markdown):
        print(part, end="\n\n")
    bullet = "- " if args.markdown else ""
    for line in info(results):
        print(bullet + line)
    missed = 0
    for target in TARGETS:
        if target.applies(results):
            holds, line = target.check(results)
            missed += not holds
            print(bullet + line)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
