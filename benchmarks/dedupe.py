"""The dedupe part of benchmarks/run.py: `@resilient.deduped` beside the other ways to share a call.

A scenario is many callers of one slow function (10 ms) with the same key, all at once. Each
candidate decorates the function; a trial gives the decorated function a key no trial has
used, serves every caller, and records the wall time from the first call to the last answer,
how many times the function ran, and which callers got an error or a wrong answer (a failure
is a result, reported as such, not a crash of the run). Trials of a scenario's candidates are
interleaved round-robin, the garbage collector off during each, and each candidate's fastest
trial is kept, as a ratio to a hand-written single flight.

A scenario's *mode* says how the callers run: ``async`` gathers coroutines in one event loop,
``threads`` releases threads from one barrier, ``processes`` spreads the awaits over the
worker processes of a `Fleet` (started once per run), released together by a barrier, each
gathering its share in its own event loop; the function's executions are counted in every
process and added up. Each mode is a `serve` function in `SERVE`, and everything else
(trials, rounds, tables, targets) is the same for every mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.synchronize
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn, TypeAlias

import aiocache  # type: ignore[import-untyped]  # aiocache ships no type information
import cashews

import resilient
from resilient.backends.redis import RedisBackend

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

WORK = 0.010  # seconds the function under test takes
TTL = 300  # seconds, for the candidates that store the value: longer than any run
LEASE = 2  # seconds, aiocache's default stampede lease
SLOW = 1.0  # seconds: a candidate whose trial took longer (or failed) is tried only once

# candidate names used by the runner's tables and targets
NONE = "no dedupe"
SINGLE_FLIGHT = "hand-written single flight"
DEDUPED = "resilient.deduped"
THUNDER = "cashews thunder_protection"
CASHEWS_MEM = "cashews @cache(lock=True), mem://"
CASHEWS_REDIS = "cashews @cache(lock=True), redis://"
CASHEWS_REDIS_LOCK = "cashews @cache(lock=True, protected=False), redis://"
AIOCACHE_MEM = "aiocache cached_stampede, memory"
AIOCACHE_REDIS = "aiocache cached_stampede, redis"
# across processes: in-process only (each process its own flight), and shared through Redis
LOCAL = "resilient.deduped, each process alone"
SHARED = "resilient.deduped(shared=True), redis://"
SHARED_NAME = "bench-fleet"  # the name the processes' shared flights meet under


# -- the function under test ---------------------------------------------------------------------


class Counter:
    """How many times the function under test ran since the last reset (thread-safe)."""

    def __init__(self) -> None:
        self.executions = 0
        # processes: each execution's time.monotonic() at its start and at its return
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.executions += 1


def slow_function(counter: Counter) -> Function:
    """A sync function that takes `WORK` seconds: a call to a slow service."""

    def fetch(n: int) -> dict[str, int]:
        counter.add()
        threading.Event().wait(WORK)
        return {"n": n}

    return fetch


def slow_coroutine(counter: Counter) -> Function:
    """The same as a coroutine function."""

    async def fetch(n: int) -> dict[str, int]:
        counter.add()
        await asyncio.sleep(WORK)
        return {"n": n}

    return fetch


def timed_coroutine(counter: Counter) -> Function:
    """The same, noting when it starts and returns: what a worker process of a `Fleet` runs."""

    async def fetch(n: int) -> dict[str, int]:
        start = time.monotonic()
        counter.add()
        await asyncio.sleep(WORK)
        counter.spans.append((start, time.monotonic()))
        return {"n": n}

    return fetch


# -- the candidates ------------------------------------------------------------------------------


def no_dedupe(function: Function) -> Function:
    """Every caller runs the function."""
    return function


def single_flight(function: Function) -> Function:
    """The single flight a user writes by hand for asyncio: a dict of futures, one per key.

    The first caller runs the function and settles the future; the others await it, shielded
    so that a cancelled follower does not cancel it for the rest.
    """
    flights: dict[Hashable, asyncio.Future[Any]] = {}

    @functools.wraps(function)
    async def shared(*args: Hashable) -> Any:
        flight = flights.get(args)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = flights[args] = asyncio.get_running_loop().create_future()
        try:
            value = await function(*args)
        except BaseException as error:
            flight.set_exception(error)
            flight.exception()  # retrieved: no warning when nobody followed
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            del flights[args]

    return shared


def thread_single_flight(function: Function) -> Function:
    """The same for threads: a dict of concurrent futures, guarded by a lock."""
    flights: dict[Hashable, concurrent.futures.Future[Any]] = {}
    guard = threading.Lock()

    @functools.wraps(function)
    def shared(*args: Hashable) -> Any:
        with guard:
            flight = flights.get(args)
            leads = flight is None
            if flight is None:
                flight = flights[args] = concurrent.futures.Future()
        if not leads:
            return flight.result()
        try:
            value = function(*args)
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            with guard:
                del flights[args]

    return shared


def resilient_deduped(function: Function) -> Function:
    # the default key: all the arguments, bound to the signature
    return resilient.deduped()(function)


def cashews_thunder(function: Function) -> Function:
    """cashews' own in-process single flight: a task per key that the callers await."""
    return cashews.thunder_protection()(function)


class Candidates:
    """The candidates that hold a cache or a client, and what closes them at the end of the run.

    Every decoration gets a cache (and so a connection pool) of its own, under a namespace
    numbered in the order of the decorations: the worker processes of a `Fleet` decorate in
    the same order, so each candidate's processes share its keys.
    """

    def __init__(self, url: str, namespace: str = "bench") -> None:
        self.url = url
        self._namespace = namespace
        self._namespaces = itertools.count()
        self._aclosers: list[Callable[[], Awaitable[object]]] = []
        # aiocache logs every failed read with its traceback; the table reports them instead
        logging.getLogger("aiocache").setLevel(logging.CRITICAL)

    def close(self, runner: asyncio.Runner) -> None:
        """Close every cache, inside *runner*'s loop."""

        async def aclose() -> None:
            for acloser in self._aclosers:
                await acloser()

        runner.run(aclose())

    def _cashews(self, function: Function, url: str, *, protected: bool) -> Function:
        # lock=True: a lock in the backend around each computation, so that waiters read the
        # value it stored; protected (the default) puts thunder_protection in front of it
        cache = cashews.Cache()
        cache.setup(url)
        self._aclosers.append(cache.close)
        prefix = f"{self._namespace}{next(self._namespaces)}"
        return cache(ttl=TTL, lock=True, protected=protected, prefix=prefix)(function)

    def cashews_memory(self, function: Function) -> Function:
        return self._cashews(function, "mem://", protected=True)

    def cashews_redis(self, function: Function) -> Function:
        return self._cashews(function, self.url, protected=True)

    def cashews_redis_lock(self, function: Function) -> Function:
        return self._cashews(function, self.url, protected=False)

    def _aiocache(self, function: Function, **where: Any) -> Function:
        decorated = aiocache.cached_stampede(
            lease=LEASE, ttl=TTL, namespace=f"{self._namespace}{next(self._namespaces)}", **where
        )(function)
        self._aclosers.append(decorated.cache.close)
        return decorated  # type: ignore[no-any-return]  # untyped library

    def aiocache_memory(self, function: Function) -> Function:
        return self._aiocache(function, cache=aiocache.Cache.MEMORY)

    def aiocache_redis(self, function: Function) -> Function:
        host, port = self.url.removeprefix("redis://").split("/")[0].split(":")
        return self._aiocache(function, cache=aiocache.Cache.REDIS, endpoint=host, port=int(port))

    def asynchronous(self) -> dict[str, Decorate]:
        return {
            SINGLE_FLIGHT: single_flight,
            NONE: no_dedupe,
            DEDUPED: resilient_deduped,
            THUNDER: cashews_thunder,
            CASHEWS_MEM: self.cashews_memory,
            CASHEWS_REDIS: self.cashews_redis,
            CASHEWS_REDIS_LOCK: self.cashews_redis_lock,
            AIOCACHE_MEM: self.aiocache_memory,
            AIOCACHE_REDIS: self.aiocache_redis,
        }


THREAD_CANDIDATES: Mapping[str, Decorate] = {
    SINGLE_FLIGHT: thread_single_flight,
    NONE: no_dedupe,
    DEDUPED: resilient_deduped,
}


# -- serving the callers -------------------------------------------------------------------------


class Scenario(NamedTuple):
    """Many callers of one function with one key, and the candidates that serve them."""

    label: str
    mode: str  # a key of SERVE
    callers: int
    candidates: Mapping[str, Decorate]
    baseline: str = SINGLE_FLIGHT


class Served(NamedTuple):
    """What a trial's callers got: the wall time, and each caller's value or exception."""

    seconds: float
    outcomes: Sequence[object]
    # counted where the function ran, when that is not this process's counter
    executions: int | None = None
    # across processes: the spread of the processes' barrier releases, when the last
    # execution returned (in seconds from the first release), and the most executions that
    # ran at the same time
    skew: float = 0.0
    landed: float | None = None
    at_once: int | None = None


# A mode: serve *callers* calls of the decorated function with *key*, within *timeout* seconds.
Serve: TypeAlias = Callable[[Function, int, int, asyncio.Runner, float], Served]


def serve_async(
    decorated: Function, key: int, callers: int, runner: asyncio.Runner, timeout: float
) -> Served:
    """Gather *callers* awaits of the decorated coroutine function in the runner's loop."""

    async def gather() -> Served:
        start = time.perf_counter()
        async with asyncio.timeout(timeout):
            outcomes = await asyncio.gather(
                *(decorated(key) for _ in range(callers)), return_exceptions=True
            )
        return Served(time.perf_counter() - start, outcomes)

    return runner.run(gather())


def serve_threads(
    decorated: Function, key: int, callers: int, runner: asyncio.Runner, timeout: float
) -> Served:
    """Release *callers* threads from one barrier, each calling the decorated function once.

    The threads are started before the barrier, so starting them is not timed; the wall time
    runs from the first call to the last answer.
    """
    barrier = threading.Barrier(callers)

    def call() -> tuple[float, float, object]:
        barrier.wait(timeout)
        start = time.perf_counter()
        try:
            outcome = decorated(key)
        except Exception as error:
            outcome = error
        return start, time.perf_counter(), outcome

    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(call) for _ in range(callers)]
        done = [future.result(timeout=timeout) for future in futures]
    first = min(start for start, _, _ in done)
    last = max(end for _, end, _ in done)
    return Served(last - first, [outcome for _, _, outcome in done])


def serve_processes(
    decorated: Function, key: int, callers: int, runner: asyncio.Runner, timeout: float
) -> Served:
    """Spread *callers* awaits over a `Fleet`'s processes, released together (see `Fleet.serve`).

    The candidate was decorated in every worker process; *decorated* only names it.
    """
    assert isinstance(decorated, Remote), f"not a Fleet's candidate: {decorated!r}"
    return decorated.fleet.serve(decorated.name, key, callers, timeout)


SERVE: Mapping[str, tuple[Serve, Callable[[Counter], Function]]] = {
    "async": (serve_async, slow_coroutine),
    "threads": (serve_threads, slow_function),
    "processes": (serve_processes, slow_coroutine),  # the workers run timed_coroutine
}


# -- trials, rounds and results ------------------------------------------------------------------


class Trial(NamedTuple):
    """One trial of one candidate: its wall time, executions, and failed callers."""

    seconds: float
    executions: int
    failed: int
    error: str  # the first failure, or ""
    skew: float = 0.0  # across processes: the spread of their barrier releases
    landed: float | None = None  # across processes: when the last execution returned
    at_once: int | None = None  # across processes: the most executions running at one time

    def describe(self, callers: int) -> str:
        if not self.failed:
            return f"all {callers:,} served"
        return f"{self.failed:,} of {callers:,} failed: {self.error}"


def _describe(outcome: object) -> str:
    if isinstance(outcome, RemoteError):
        return str(outcome)
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}".strip().removesuffix(":")
    return f"wrong answer {outcome!r}"


class Bench:
    """One candidate in one scenario: its decorated function and its trials."""

    keys = itertools.count(1)  # a key no trial has used: every trial starts cold

    def __init__(self, scenario: Scenario, name: str) -> None:
        self.scenario = scenario
        self.name = name
        self.counter = Counter()
        serve, function = SERVE[scenario.mode]
        self._serve = serve
        self.decorated = scenario.candidates[name](function(self.counter))
        self.trials: list[Trial] = []

    def trial(self, runner: asyncio.Runner, callers: int, timeout: float) -> Trial:
        key = next(self.keys)
        self.counter.executions = 0
        gc.collect()  # garbage left by the previous trial is not this one's to pay for
        gc.disable()
        try:
            served = self._serve(self.decorated, key, callers, runner, timeout)
        except TimeoutError:
            return Trial(
                timeout, self.counter.executions, callers, f"timed out after {timeout:g} s"
            )
        finally:
            gc.enable()
        expected = {"n": key}
        failures = [outcome for outcome in served.outcomes if outcome != expected]
        error = _describe(failures[0]) if failures else ""
        executions = self.counter.executions if served.executions is None else served.executions
        return Trial(
            served.seconds,
            executions,
            len(failures),
            error,
            served.skew,
            served.landed,
            served.at_once,
        )

    def measure(self, runner: asyncio.Runner, timeout: float) -> None:
        if self.trials and (self.trials[0].failed or self.trials[0].seconds > SLOW):
            return  # tried once: slow or failing, and the first trial says so
        self.trials.append(self.trial(runner, self.scenario.callers, timeout))

    @property
    def best(self) -> Trial:
        """The fastest trial in which every caller was served, else the first one."""
        served = [trial for trial in self.trials if not trial.failed]
        return min(served, key=lambda trial: trial.seconds) if served else self.trials[0]

    def noise(self) -> float:
        """How much slower the median trial was than the fastest: the machine's noise."""
        return statistics.median(trial.seconds for trial in self.trials) / self.best.seconds - 1


class Results(NamedTuple):
    scenarios: list[Scenario]
    benches: dict[tuple[str, str], Bench]  # (scenario label, candidate) -> bench

    def ratio(self, label: str, name: str) -> float | None:
        """The candidate's fastest wall time over the baseline's, or None if it failed."""
        bench = self.benches[label, name]
        baseline = self.benches[label, bench.scenario.baseline].best
        best = bench.best
        return None if best.failed or baseline.failed else best.seconds / baseline.seconds


def run(
    scenarios: Sequence[Scenario], rounds: int, runner: asyncio.Runner, *, timeout: float
) -> Results:
    """Warm every candidate up, then run *rounds* rounds of one trial per candidate each."""
    resilient.reset_defaults()  # system clock, no observers, testing mode off
    benches = {
        (scenario.label, name): Bench(scenario, name)
        for scenario in scenarios
        for name in scenario.candidates
    }
    order = list(benches.values())
    for bench in order:  # connect, load scripts, spawn the threads' first stacks
        bench.trial(runner, 2, timeout)
    # As in the batches of benchmarks/run.py: what exists now is left out of the collections
    # before each trial, and none runs during one (a full collection of it all takes tens of ms)
    gc.collect()
    gc.freeze()
    try:
        for index in range(rounds):
            shift = index % len(order)
            for bench in order[shift:] + order[:shift]:
                bench.measure(runner, timeout)
    finally:
        gc.unfreeze()
    return Results(list(scenarios), benches)


# -- across processes ----------------------------------------------------------------------------

PROCESSES = 4
BARRIER_TIMEOUT = 60.0  # seconds a worker process waits at the barrier for the others

# The candidates of a `processes` scenario, in the order of its table; the first is its
# baseline. cashews without its in-process guard (CASHEWS_REDIS_LOCK) is not one: it serialises
# every caller on its Redis lock (7.6 and 8.9 s for 4 x 250 callers in two full runs), one trial
# costing more than all the others together, for the shape the one-process scenario shows.
FLEET = (LOCAL, SHARED, NONE, CASHEWS_REDIS, AIOCACHE_REDIS)
# left out of a smoke test: it opens a connection per caller, up to seconds on a busy machine
FLEET_SLOW = (AIOCACHE_REDIS,)


class RemoteError(Exception):
    """A caller's exception in a worker process, as described there (not every one pickles)."""


class Remote:
    """A `Fleet`'s candidate in this process: a name that `serve_processes` serves it by.

    The candidate itself was decorated, and runs, in each worker process.
    """

    def __init__(self, fleet: Fleet, name: str) -> None:
        self.fleet = fleet
        self.name = name

    def __call__(self, *args: object) -> NoReturn:
        raise TypeError(f"{self.name} runs in the fleet's worker processes, not in this one")

    def __repr__(self) -> str:
        return f"Remote({self.name!r})"


class Member(NamedTuple):
    """What one worker process made of a trial; its times are `time.monotonic()` readings."""

    released: float  # when the barrier released it
    finished: float  # when its last caller got an answer
    executions: int
    spans: list[tuple[float, float]]  # when each execution started and returned
    outcomes: list[object]


class _Member:
    """A worker process's state from trial to trial: its loop, counter and decorated candidates.

    Every process decorates the candidates in the same order, so that the namespaces
    `Candidates` numbers match and each candidate's processes share its Redis keys.
    """

    def __init__(self, url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
        resilient.reset_defaults()  # system clock, no observers, testing mode off
        self.barrier = barrier
        self.counter = Counter()
        self.runner = asyncio.Runner()
        self.backend = RedisBackend.from_url(url)
        self.candidates = Candidates(url, namespace="fleet")
        decorators: dict[str, Decorate] = {
            LOCAL: resilient_deduped,
            SHARED: self.shared,
            NONE: no_dedupe,
            CASHEWS_REDIS: self.candidates.cashews_redis,
            AIOCACHE_REDIS: self.candidates.aiocache_redis,
        }
        function = timed_coroutine(self.counter)
        self.decorated = {name: decorators[name](function) for name in FLEET}
        gc.collect()
        gc.freeze()  # as in this module's `run`: out of the collections before each trial

    def shared(self, function: Function) -> Function:
        # one name in every process: their flights of one key meet on the backend
        policy = resilient.deduped(
            shared=True, backend=self.backend, lease_ttl=LEASE, name=SHARED_NAME
        )
        return policy(function)

    def close(self) -> None:
        self.candidates.close(self.runner)
        self.runner.run(self.backend.aclose())
        self.runner.close()
        self.backend.close()


_members: list[_Member] = []  # in a worker process: its one _Member, made by _start_member


def _start_member(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    _members.append(_Member(url, barrier))


def _portable(outcome: object) -> object:
    return RemoteError(_describe(outcome)) if isinstance(outcome, BaseException) else outcome


def _serve_member(name: str, key: int, callers: int, timeout: float) -> Member:
    """In a worker: wait for the others at the barrier, then gather *callers* awaits."""
    [member] = _members  # a worker process of a Fleet
    decorated, counter = member.decorated[name], member.counter
    counter.executions, counter.spans = 0, []

    async def gather() -> tuple[float, list[object]]:
        async with asyncio.timeout(timeout):
            outcomes = await asyncio.gather(
                *(decorated(key) for _ in range(callers)), return_exceptions=True
            )
        return time.monotonic(), outcomes

    gc.collect()  # garbage left by the previous trial is not this one's to pay for
    gc.disable()
    try:
        member.barrier.wait(BARRIER_TIMEOUT)
        released = time.monotonic()
        finished, outcomes = member.runner.run(gather())
    finally:
        gc.enable()
    portable = [_portable(outcome) for outcome in outcomes]
    return Member(released, finished, counter.executions, counter.spans, portable)


def _stop_member() -> None:
    [member] = _members  # a worker process of a Fleet
    member.barrier.wait(BARRIER_TIMEOUT)  # so that every process gets one of the stops
    member.close()


class Fleet:
    """`PROCESSES` worker processes, started once per run, that serve the `processes` mode.

    They come from a fork server (``forkserver``: each a fork of one clean process that
    imported the runner's modules, never of this one, which has threads and an event loop
    about), so they run the very function and candidate definitions of this module. A trial
    gives each process an equal share of the callers; a barrier releases the processes
    together, and each gathers its share at once in its own event loop, kept from trial to
    trial.
    """

    def __init__(self, url: str, processes: int = PROCESSES) -> None:
        self.url = url
        self.processes = processes
        context = multiprocessing.get_context("forkserver")
        self._barrier = context.Barrier(processes)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            processes,
            mp_context=context,
            initializer=_start_member,
            initargs=(url, self._barrier),
        )

    def close(self) -> None:
        """Close every process's candidates and clients, then stop the processes."""
        with contextlib.suppress(Exception):  # a broken pool has nothing left to close
            stops = [self._pool.submit(_stop_member) for _ in range(self.processes)]
            for stop in stops:
                stop.result(timeout=BARRIER_TIMEOUT + 10)
        self._pool.shutdown(cancel_futures=True)

    def candidates(self, *, quick: bool = False) -> dict[str, Decorate]:
        """Every candidate of `FLEET` (*quick*: but the slow ones), by name."""
        names = [name for name in FLEET if not (quick and name in FLEET_SLOW)]
        return {name: functools.partial(self._remote, name) for name in names}

    def _remote(self, name: str, function: Function) -> Function:
        return Remote(self, name)

    def serve(self, name: str, key: int, callers: int, timeout: float) -> Served:
        """Serve *callers* awaits of candidate *name* with *key*, an equal share per process.

        The wall time runs from the first process's release to the last answer in any
        process, both read with `time.monotonic()`: CLOCK_MONOTONIC, one clock for every
        process on Linux. Beside it: the spread of the processes' releases, and when the last
        execution returned, and the most executions that ran at one time in all the processes.
        """
        share = max(1, callers // self.processes)
        futures = [
            self._pool.submit(_serve_member, name, key, share, timeout)
            for _ in range(self.processes)
        ]
        done, _ = concurrent.futures.wait(futures, timeout=timeout + BARRIER_TIMEOUT)
        if len(done) < len(futures):
            raise TimeoutError(f"the worker processes took over {timeout:g} s")
        errors = [future.exception() for future in futures]
        if any(isinstance(error, threading.BrokenBarrierError) for error in errors):
            self._barrier.reset()
            raise TimeoutError("a worker process did not reach the barrier")
        for error in errors:
            if error is not None:
                raise error
        members = [future.result() for future in futures]
        start = min(member.released for member in members)
        spans = [span for member in members for span in member.spans]
        return Served(
            max(member.finished for member in members) - start,
            [outcome for member in members for outcome in member.outcomes],
            executions=sum(member.executions for member in members),
            skew=max(member.released for member in members) - start,
            landed=max(end for _, end in spans) - start if spans else None,
            at_once=_most_at_once(spans),
        )


def _most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The most of the *spans* (start, end) that overlap at any one time."""
    # at equal times an end comes before a start: one execution right after another is not two
    # at once
    moments = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = running = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most
