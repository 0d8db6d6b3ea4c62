"""The pipeline part of benchmarks/run.py: what `resilient.pipeline(...)` costs a call.

The claim measured: a pipeline of timeout + retry + breaker costs no more than one wrapper
layer over its three policies. Each candidate decorates the function of its scenario (sync or
async) on the success path: the timeout not reached, the first attempt succeeding, the breaker
closed. Beside the pipeline are the same three decorators stacked by hand (which fuse into one
wrapper: the pipeline must cost what they cost), each policy alone (a wrapper and its policy),
and the wrapper alone with no policy in it. From those, one wrapper over the three policies
costs the wrapper's time plus each policy's time beyond its own wrapper; `OneWrapper` checks
the pipeline against that. `check_stacking` proves before timing that every candidate does its
work: answers like the function, retries, breaks, sets the deadline, and for the pipeline and
the stack by hand, that they are one wrapper around the function. See docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeAlias

import cache  # benchmarks/cache.py, beside this file

import resilient
from resilient._decorate import Call, Decorator, Target, layers_of

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

ATTEMPTS = 3
LIMIT = 2.0  # seconds: never reached by a call that returns at once

# scenario labels and candidate names used by the runner's tables and targets
SYNC = "timeout+retry+breaker sync"
ASYNC = "timeout+retry+breaker async"
LABELS = (SYNC, ASYNC)
BARE = cache.BARE
WRAPPER = "resilient wrapper, no policy"
TIMEOUT = "resilient.timeout alone"
RETRY = "resilient.retry alone"
BREAKER = "resilient.breaker alone"
HAND = "resilient.timeout + .retry + .breaker, by hand"
PIPELINE = "resilient.pipeline(timeout, retry, breaker)"

_names = itertools.count()


def _timeout() -> Decorate:
    return resilient.timeout(LIMIT)


def _retry() -> Decorate:
    return resilient.retry(on=ConnectionError, attempts=ATTEMPTS, wait=resilient.wait.none())


def _breaker() -> Decorate:
    # the defaults (failure rate 50% over 100 calls, once 10 are in), a name per decoration
    return resilient.breaker(f"bench-pipeline-{next(_names)}", open_for=30)


class _Nothing:
    """A layer that adds no step: what is left is the wrapper, calling the function."""

    def build(self, inner: Call, target: Target) -> Call:
        return inner


def bare(function: Function) -> Function:
    """No policy at all: the function itself."""
    return function


def wrapper_alone(function: Function) -> Function:
    """The one wrapper every `resilient` decorator builds, with no policy inside."""
    return Decorator(_Nothing(), "@nothing")(function)


def timeout_alone(function: Function) -> Function:
    return _timeout()(function)


def retry_alone(function: Function) -> Function:
    return _retry()(function)


def breaker_alone(function: Function) -> Function:
    return _breaker()(function)


def by_hand(function: Function) -> Function:
    """The three decorators written above the function, outermost first."""
    return _timeout()(_retry()(_breaker()(function)))


def piped(function: Function) -> Function:
    return resilient.pipeline(_timeout(), _retry(), _breaker())(function)


CANDIDATES: dict[str, Decorate] = {
    BARE: bare,
    WRAPPER: wrapper_alone,
    TIMEOUT: timeout_alone,
    RETRY: retry_alone,
    BREAKER: breaker_alone,
    HAND: by_hand,
    PIPELINE: piped,
}
_RETRIES = frozenset({RETRY, HAND, PIPELINE})
_BREAKS = frozenset({BREAKER, HAND, PIPELINE})
_LIMITS = frozenset({TIMEOUT, HAND, PIPELINE})


def check_stacking(
    name: str, decorate: Decorate, function: Function, runner: asyncio.Runner
) -> None:
    """Check that *decorate* answers like *function* and that each of its policies acts.

    Three calls each run the function once and answer like it. A candidate with the timeout
    sets the deadline inside the call; with the retry, a failing function is tried three
    times; with the breaker, a failing function stops being called. The pipeline and the
    stack by hand are one wrapper around the function, with the same layers.
    """
    counted = cache.Counted(function)
    decorated = decorate(counted.function)
    outcomes = [counted.call(decorated, 7, runner) for _ in range(3)]
    assert outcomes == [7, 7, 7], f"{name} gave {outcomes!r}"
    assert counted.calls == 3, f"{name} made {counted.calls} calls, not 3"
    if name in (HAND, PIPELINE):
        assert decorated.__wrapped__ is counted.function, f"{name} is not one wrapper"
        expected = [layer.__class__ for layer in layers_of(by_hand(counted.function))]
        assert [layer.__class__ for layer in layers_of(decorated)] == expected, name
    is_async = counted.is_async

    def left(value: int) -> float | None:
        return resilient.remaining()

    async def aleft(value: int) -> float | None:
        return resilient.remaining()

    remaining = cache.Counted(aleft if is_async else left)
    deadline = remaining.call(decorate(remaining.function), 7, runner)
    assert (deadline is not None) is (name in _LIMITS), f"{name}: the deadline was {deadline}"

    def broken(value: int) -> int:
        raise ConnectionError(value)

    async def abroken(value: int) -> int:
        return broken(value)

    failing = cache.Counted(abroken if is_async else broken)
    guarded = decorate(failing.function)
    with_failures = 0
    for _ in range(30):
        try:
            failing.call(guarded, 1, runner)
        except Exception:  # the failure, or the breaker's refusal
            with_failures += 1
    per_call = ATTEMPTS if name in _RETRIES else 1
    assert with_failures == 30, f"{name} let a failure pass"
    if name in _BREAKS:
        assert failing.calls < 30 * per_call, f"{name} never stopped calling a failing function"
    else:
        assert failing.calls == 30 * per_call, f"{name} made {failing.calls} attempts"


class _Results(Protocol):
    @property
    def benches(self) -> dict[tuple[str, str], Any]: ...


class OneWrapper(NamedTuple):
    """The claim: the pipeline costs at most *limit* times one wrapper over its three policies.

    Each policy alone costs its wrapper and itself; one wrapper over the three costs the
    wrapper alone plus what each policy alone costs beyond the wrapper alone. All measured
    over a bare call, in the scenario *label*.
    """

    label: str
    limit: float = 1.1

    def applies(self, results: _Results) -> bool:
        return (self.label, PIPELINE) in results.benches

    def check(self, results: _Results) -> tuple[bool, str]:
        benches = results.benches
        bare_ns = benches[self.label, BARE].best_ns

        def over(name: str) -> float:
            cost: float = benches[self.label, name].best_ns - bare_ns
            return cost

        wrapper = over(WRAPPER)
        policies = {name: over(name) - wrapper for name in (TIMEOUT, RETRY, BREAKER)}
        budget = wrapper + sum(policies.values())
        value = over(PIPELINE)
        holds = value <= self.limit * budget
        each = " + ".join(
            f"{name.split()[0].removeprefix('resilient.')} {ns:.0f}"
            for name, ns in policies.items()
        )
        return holds, (
            f"{'PASS' if holds else 'FAIL'}  {self.label}: {PIPELINE} = {value:.0f} ns over a "
            f"bare call, {value / budget:.2f}x one wrapper over its three policies "
            f"(wrapper {wrapper:.0f} + {each} = {budget:.0f} ns; target <= {self.limit:g}x)"
        )


TARGETS = (OneWrapper(SYNC), OneWrapper(ASYNC))
