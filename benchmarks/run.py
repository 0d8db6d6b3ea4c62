"""Measure the overhead of `resilient.retry` side by side with the anchor libraries.

Every candidate wraps the same function and is timed in batches, interleaved round-robin with
the others in one process run; the result is each candidate's cost as a ratio to a bare call of
the same scenario, because on a shared machine absolute times are noise but ratios measured side
by side are not. See docs/benchmarks.md for the method and the latest measured table.

Run: ``python benchmarks/run.py`` (under a minute), ``--quick`` for a smoke test,
``--markdown`` for the table as markdown, ``--check`` to exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib.metadata
import inspect
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple, TypeAlias

import backoff
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


RESILIENT = "resilient.retry"
STACKED = "resilient.retry x2 (stacked)"
LOOP = "hand-written loop"
BARE = "bare call"
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


class Scenario(NamedTuple):
    path: str  # "success" or "failure"
    mode: str  # "sync" or "async"
    function: Function

    @property
    def label(self) -> str:
        return f"{self.path} {self.mode}"


SCENARIOS = (
    Scenario("success", "sync", succeed),
    Scenario("success", "async", asucceed),
    Scenario("failure", "sync", fail),
    Scenario("failure", "async", afail),
)


# Both paths share one batch loop per mode: a try block costs nothing until something raises
# (CPython 3.11+), so the success path pays nothing for the handler the failure path needs.


def sync_batch(function: Function, calls: int) -> int:
    """Make *calls* calls with the garbage collector off; return the nanoseconds they took."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            try:
                function(1)
            except ConnectionError:
                continue
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


async def async_batch(function: Callable[[int], Awaitable[Any]], calls: int) -> int:
    """Await *calls* calls inside the running loop, as sync_batch does."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            try:
                await function(1)
            except ConnectionError:
                continue
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


class Bench:
    """One candidate in one scenario: its decorated function, batch size and timings."""

    def __init__(self, scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
        self.scenario = scenario
        self.name = name
        self.function = CANDIDATES[name](scenario.function)
        self._runner = runner
        self.calls = 1
        self.per_call_ns: list[float] = []

    def time_batch(self, calls: int) -> int:
        gc.collect()  # garbage left by the previous batch is not this one's to pay for
        if self.scenario.mode == "sync":
            return sync_batch(self.function, calls)
        batch: Coroutine[Any, Any, int] = async_batch(self.function, calls)
        return self._runner.run(batch)

    def calibrate(self, batch_ns: int) -> None:
        """Warm up, and size the batch so that it takes about *batch_ns*."""
        calls = 16
        while (elapsed := self.time_batch(calls)) < batch_ns // 4:
            calls *= 2
        self.calls = max(1, calls * batch_ns // max(elapsed, 1))
        self.time_batch(self.calls)

    def measure(self) -> None:
        self.per_call_ns.append(self.time_batch(self.calls) / self.calls)

    @property
    def best_ns(self) -> float:
        # Other work on a shared machine can only ever add time to a batch, never take it away,
        # so the fastest of many short batches is the closest estimate of the candidate's own
        # cost; on a loaded two-core machine it is also far steadier from run to run than the
        # median (see docs/benchmarks.md).
        return min(self.per_call_ns)


def verify(scenario: Scenario, name: str, runner: asyncio.Runner) -> None:
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
    decorated = CANDIDATES[name](counted)

    async def await_call() -> Any:
        return await decorated(7)

    outcome: object
    try:
        outcome = runner.run(await_call()) if scenario.mode == "async" else decorated(7)
    except ConnectionError as exc:
        outcome = exc
    if scenario.path == "success":
        assert outcome == 7, f"{name}: {scenario.label} gave {outcome!r}, not 7"
    else:
        assert isinstance(outcome, ConnectionError), f"{name}: {scenario.label} gave {outcome!r}"
        assert outcome.args == (7,), f"{name}: raised {outcome!r}, not the original exception"
    expected = ATTEMPTS if scenario.path == "failure" and name != BARE else 1
    assert calls == expected, f"{name}: {scenario.label} made {calls} calls, not {expected}"
    if name == STACKED:
        wrapper = resilient_stacked(counted)
        assert getattr(wrapper, "__wrapped__", None) is counted, "stacking did not fuse"


# -- running and reporting -----------------------------------------------------------------------


class Results(NamedTuple):
    benches: dict[tuple[str, str], Bench]  # (scenario label, candidate) -> bench

    def ratio(self, scenario: Scenario, name: str, to: str = BARE) -> float:
        benches = self.benches
        return benches[scenario.label, name].best_ns / benches[scenario.label, to].best_ns

    def noise(self, scenario: Scenario, name: str) -> float:
        """How much slower the median batch was than the fastest: the machine's noise."""
        bench = self.benches[scenario.label, name]
        return statistics.median(bench.per_call_ns) / bench.best_ns - 1


def run(rounds: int, batch_ms: float) -> Results:
    disable_logging()
    resilient.reset_defaults()  # system clock, no observers, testing mode off
    with asyncio.Runner() as runner:
        benches = {}
        for scenario in SCENARIOS:
            for name in CANDIDATES:
                verify(scenario, name, runner)
                benches[scenario.label, name] = Bench(scenario, name, runner)
        order = list(benches.values())
        for bench in order:
            bench.calibrate(int(batch_ms * 1e6))
        # Round-robin: every round times one batch of every candidate in every scenario, so a
        # slow spell on the machine hits all of them alike. Each round starts one place further
        # along, so no candidate always runs right after the same neighbour.
        for index in range(rounds):
            shift = index % len(order)
            for bench in order[shift:] + order[:shift]:
                bench.measure()
    return Results(benches)


class Target(NamedTuple):
    """A budget: *candidate* costs at most (or at least) *limit* times *baseline*."""

    scenario: Scenario
    candidate: str
    baseline: str
    limit: float
    at_most: bool

    def check(self, results: Results) -> tuple[bool, str]:
        value = results.ratio(self.scenario, self.candidate, to=self.baseline)
        holds = value <= self.limit if self.at_most else value >= self.limit
        sign = "<=" if self.at_most else ">="
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  {self.scenario.label}: {self.candidate} = "
            f"{value:.1f}x {self.baseline} (target {sign} {self.limit:g}x)"
        )


SUCCESS_SYNC, SUCCESS_ASYNC, FAILURE_SYNC, FAILURE_ASYNC = SCENARIOS

TARGETS = (
    Target(SUCCESS_SYNC, RESILIENT, BARE, 15, at_most=True),
    Target(SUCCESS_ASYNC, RESILIENT, BARE, 20, at_most=True),
    # "at least 5x faster than backoff, the fastest anchor"
    Target(SUCCESS_SYNC, BACKOFF, RESILIENT, 5, at_most=False),
    Target(SUCCESS_ASYNC, BACKOFF, RESILIENT, 5, at_most=False),
    Target(FAILURE_SYNC, RESILIENT, LOOP, 3, at_most=True),
    Target(FAILURE_ASYNC, RESILIENT, LOOP, 3, at_most=True),
)


def machine() -> str:
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("resilient", "tenacity", "stamina", "backoff")
    )
    return (
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {versions}"
    )


def table(results: Results, *, markdown: bool) -> str:
    header = ["candidate", *(f"{s.label} (x bare)" for s in SCENARIOS)]
    rows = [header]
    for name in CANDIDATES:
        cells = []
        for scenario in SCENARIOS:
            cell = f"{results.ratio(scenario, name):.1f}"
            if not markdown:
                cell += f" +{results.noise(scenario, name):.0%}"
            cells.append(cell)
        rows.append([name, *cells])
    # absolute times vary with the machine's load; they are here to put the ratios in scale
    bare_ns = [f"{results.benches[s.label, BARE].best_ns:.0f} ns" for s in SCENARIOS]
    rows.append(["(bare call, time per call)", *bare_ns])
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join(["---", *["---:"] * len(SCENARIOS)]) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds: a smoke test")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--rounds", type=int, help="rounds of batches (default 40; quick 3)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 40)
    batch_ms = 2.0 if args.quick else 10.0

    print(f"{machine()}\n{rounds} rounds, batches of ~{batch_ms:g} ms, fastest batch per candidate")
    if not args.markdown:
        print("(+N%: how much slower the median batch was, i.e. the machine's noise)")
    print()
    results = run(rounds, batch_ms)
    print(table(results, markdown=args.markdown))
    print()
    bullet = "- " if args.markdown else ""
    for scenario in (SUCCESS_SYNC, SUCCESS_ASYNC):
        stacked = results.ratio(scenario, STACKED, to=RESILIENT)
        print(f"{bullet}info  {scenario.label}: {STACKED} = {stacked:.2f}x {RESILIENT}")
    missed = 0
    for target in TARGETS:
        holds, line = target.check(results)
        missed += not holds
        print(bullet + line)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
