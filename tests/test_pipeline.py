"""`resilient.pipeline`: a stack declared once, checked when made, applied as one wrapper."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from cache_support import run
from hypothesis import given
from hypothesis import strategies as st

import resilient
from resilient import (
    Pipeline,
    breaker,
    bulkhead,
    cached,
    deduped,
    fallback,
    idempotent,
    lock,
    rate_limited,
    retry,
    timeout,
    wait,
)
from resilient._decorate import Decorator, Wrapper, layers_of, site_of
from resilient.exceptions import CircuitOpenError, CompositionWarning
from resilient.exceptions import TimeoutError as ResilientTimeoutError
from resilient.testing import FakeClock


def label(policy: Callable[..., Any]) -> str:
    """How a pipeline's messages write *policy*."""
    return repr(resilient.pipeline(policy)).removeprefix("<Pipeline ").removesuffix(">")


def stacked(policies: tuple[Callable[..., Any], ...], function: Callable[..., Any]) -> Any:
    """Apply *policies* (outermost first) by hand, as decorators written above *function*."""
    for policy in reversed(policies):
        function = policy(function)
    return function


class Flaky:
    """A dependency failing its first *failures* calls with ConnectionError, counting calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("the dependency is down")
        return value


# --- one wrapper, the hand-stacked one ----------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_pipeline_gives_the_very_wrapper_the_decorators_stacked_by_hand_give(
    is_async: bool,
) -> None:
    """Same layers, one wrapper of the same type, around the original function, metadata kept."""
    policies = (
        fallback(on=CircuitOpenError, value=None),
        timeout(2.0),
        cached(ttl=60),
        retry(on=ConnectionError, attempts=3, wait=wait.none()),
        breaker("pipeline-structure", consecutive_failures=5),
        bulkhead(max_concurrent=4),
        rate_limited(rate=100),
    )

    def lookup(key: str) -> str:
        """Look *key* up."""
        return key

    async def alookup(key: str) -> str:
        """Look *key* up."""
        return key

    original = alookup if is_async else lookup
    piped = resilient.pipeline(*policies)(original)
    by_hand = stacked(policies, original)

    assert layers_of(piped) == layers_of(by_hand)
    assert len(layers_of(piped)) == len(policies)
    piped_site, hand_site = site_of(piped), site_of(by_hand)
    assert piped_site is not None
    assert hand_site is not None
    assert piped_site.decorators == hand_site.decorators  # what a call's span is told
    assert piped.__wrapped__ is original  # type: ignore[attr-defined]
    assert layers_of(piped.__wrapped__) == ()  # type: ignore[attr-defined]  # one layer only
    assert type(piped) is type(by_hand)
    assert hasattr(piped, "invalidate")  # the cache's wrapper type, as by hand
    assert inspect.iscoroutinefunction(piped) is is_async
    assert inspect.signature(piped) == inspect.signature(original)
    assert (piped.__name__, piped.__doc__) == (
        "alookup" if is_async else "lookup",
        "Look *key* up.",
    )
    assert (run(piped("k")) if is_async else piped("k")) == "k"


def test_the_benchmarked_pipeline_is_one_plain_function_or_one_wrapt_wrapper() -> None:
    """timeout + retry + breaker: a plain function around a def, one Wrapper around an async def."""
    policy = resilient.pipeline(
        timeout(2.0), retry(on=ConnectionError, attempts=3), breaker("pipeline-three")
    )

    def call(value: int) -> int:
        return value

    async def acall(value: int) -> int:
        return value

    piped, apiped = policy(call), policy(acall)
    assert inspect.isfunction(piped)
    assert piped.__wrapped__ is call  # type: ignore[attr-defined]
    assert isinstance(apiped, Wrapper)
    assert apiped.__wrapped__ is acall
    assert len(layers_of(piped)) == len(layers_of(apiped)) == 3


def test_a_pipeline_given_a_pipeline_takes_its_policies_in_its_place() -> None:
    """pipeline(a, pipeline(b, c)) is pipeline(a, b, c)."""
    first, second, third = (
        timeout(2.0),
        retry(on=ConnectionError, wait=wait.none()),
        breaker("pipeline-nested"),
    )
    nested = resilient.pipeline(first, resilient.pipeline(second, third))
    assert nested.policies == (first, second, third)
    assert repr(nested) == "<Pipeline timeout(2), retry(...), breaker('pipeline-nested')>"

    def call(value: int) -> int:
        return value

    assert layers_of(nested(call)) == layers_of(resilient.pipeline(first, second, third)(call))


# --- sync and async, functions and methods, many functions ---------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_recommended_stack_retries_through_the_breaker_and_answers_when_open(
    is_async: bool,
) -> None:
    """Two failures then a success; then a dependency down trips the breaker, and the fallback
    answers the refusal without a call."""
    name = f"pipeline-recommended-{is_async}"
    policy = resilient.pipeline(
        fallback(on=CircuitOpenError, value="fallback"),
        timeout(5),
        retry(on=ConnectionError, attempts=3, wait=wait.none()),
        breaker(name, consecutive_failures=3, open_for=30),
        bulkhead(max_concurrent=2),
    )
    dependency = Flaky(failures=2)

    async def acall(value: str) -> str:
        return dependency(value)

    fetch = policy(acall if is_async else dependency)

    def outcome(value: str) -> Any:
        return run(fetch(value)) if is_async else fetch(value)

    assert outcome("rates") == "rates"
    assert dependency.calls == 3
    assert breaker(name).stats().failures == 2  # the breaker saw every attempt

    dependency.failures = 100
    with pytest.raises(ConnectionError):
        outcome("rates")  # three more failures in a row: open
    assert outcome("rates") == "fallback"
    assert dependency.calls == 6


def test_a_pipeline_decorates_every_kind_of_method() -> None:
    """Methods, classmethods, staticmethods and async methods bind and retry through it."""
    policy = resilient.pipeline(
        retry(on=ConnectionError, attempts=2, wait=wait.none()), breaker("pipeline-methods")
    )
    failures = {"method": Flaky(1), "cm": Flaky(1), "sm": Flaky(1), "amethod": Flaky(1)}

    class Service:
        @policy
        def method(self, x: str) -> tuple[object, str]:
            return self, failures["method"](x)

        @policy
        @classmethod
        def cm(cls, x: str) -> tuple[object, str]:
            return cls, failures["cm"](x)

        @policy
        @staticmethod
        def sm(x: str) -> str:
            return failures["sm"](x)

        @policy
        async def amethod(self, x: str) -> tuple[object, str]:
            await asyncio.sleep(0)
            return self, failures["amethod"](x)

    service = Service()
    assert service.method("a") == (service, "a")
    assert Service.cm("b") == (Service, "b")
    assert service.sm("c") == "c"
    assert run(service.amethod("d")) == (service, "d")
    assert inspect.iscoroutinefunction(Service.amethod)
    assert [flaky.calls for flaky in failures.values()] == [2, 2, 2, 2]


def test_one_pipeline_serves_many_functions_as_its_decorators_would() -> None:
    """Applied to two functions, each gets its own bulkhead, and the named breaker is shared."""
    policy = resilient.pipeline(
        breaker("pipeline-shared", consecutive_failures=2), bulkhead(max_concurrent=1)
    )

    @policy
    def inner() -> str:
        return "inner ran"

    @policy
    def outer() -> str:
        return inner()  # its own bulkhead: admitted while outer holds outer's one slot

    @policy
    async def down() -> None:
        raise ConnectionError("down")

    assert outer() == "inner ran"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            run(down())
    with pytest.raises(CircuitOpenError):  # the async function's failures opened the breaker
        outer()


# --- timeouts: a budget above the retry, a limit per attempt under it ------------------------


def test_a_timeout_under_the_retry_limits_each_attempt() -> None:
    """Total budget, retry of TimeoutError, per-attempt limit: hung attempts are tried again."""
    hangs: list[int] = []
    policy = resilient.pipeline(
        timeout(2.0), retry(on=TimeoutError, attempts=3, wait=wait.none()), timeout(0.05)
    )

    @policy
    async def search(query: str) -> str:
        hangs.append(1)
        if len(hangs) < 3:
            await asyncio.sleep(10)
        return query

    assert run(search("rates")) == "rates"
    assert len(hangs) == 3


@pytest.mark.parametrize(
    ("per_attempt_at", "failures"), [(1, 0), (2, 2)], ids=["under-the-retry", "under-the-breaker"]
)
def test_where_the_attempt_limit_sits_decides_what_the_breaker_counts(
    per_attempt_at: int, failures: int
) -> None:
    """Above the breaker, an attempt cut off is a cancellation (no failure); under it, the breaker
    counts its TimeoutError as the dependency failing."""
    name = f"pipeline-limit-{per_attempt_at}"
    policies: list[Callable[..., Any]] = [
        retry(on=TimeoutError, attempts=2, wait=wait.none()),
        breaker(name, consecutive_failures=5),
    ]
    policies.insert(per_attempt_at, timeout(0.02))

    @resilient.pipeline(*policies)
    async def hang() -> None:
        await asyncio.sleep(10)

    with pytest.raises(ResilientTimeoutError):
        run(hang())
    assert breaker(name).stats().failures == failures


def test_a_sync_attempt_past_its_limit_is_retried(clock: FakeClock) -> None:
    """On sync code the attempt runs to its end; past its limit it is a TimeoutError, retried."""
    durations = iter([1.0, 0.1])

    @resilient.pipeline(
        timeout(5), retry(on=TimeoutError, attempts=2, wait=wait.none()), timeout(0.5)
    )
    def fetch() -> str:
        clock.advance(next(durations))
        return "done"

    assert fetch() == "done"


# --- the order, checked when the pipeline is made ----------------------------------------------


@pytest.mark.parametrize(
    ("policies", "outer", "inner", "order"),
    [
        (
            lambda: (breaker("pipeline-order"), retry(on=ConnectionError)),
            "breaker('pipeline-order')",
            "retry(...)",
            "retry(...), breaker('pipeline-order')",
        ),
        (
            lambda: (
                timeout(2),
                bulkhead(max_concurrent=1, name="slots"),
                retry(on=ConnectionError),
                breaker("pipeline-order"),
            ),
            "bulkhead(name='slots')",
            "retry(...)",
            "timeout(2), retry(...), breaker('pipeline-order'), bulkhead(name='slots')",
        ),
        (
            lambda: (breaker("pipeline-order"), timeout(1), retry(on=ConnectionError)),
            "breaker('pipeline-order')",
            "timeout(1)",
            "timeout(1), retry(...), breaker('pipeline-order')",
        ),
        (
            lambda: (cached(ttl=60), fallback(on=CircuitOpenError, value=None)),
            "cached(...)",
            "fallback(...)",
            "fallback(...), cached(...)",
        ),
        (
            lambda: (retry(on=ConnectionError), idempotent(key="request_id")),
            "retry(...)",
            "idempotent(...)",
            "idempotent(...), retry(...)",
        ),
        (
            lambda: (rate_limited(rate=10), lock("pipeline-order")),
            "rate_limited(...)",
            "lock('pipeline-order')",
            "lock('pipeline-order'), rate_limited(...)",
        ),
        (
            lambda: (breaker("pipeline-order"), deduped()),
            "breaker('pipeline-order')",
            "deduped(...)",
            "deduped(...), breaker('pipeline-order')",
        ),
    ],
    ids=[
        "breaker-retry",
        "bulkhead-retry",
        "breaker-timeout",
        "cache-fallback",
        "retry-idem",
        "rate-lock",
        "breaker-dedupe",
    ],
)
def test_two_policies_out_of_order_are_refused_naming_them_and_the_order_to_write(
    policies: Callable[[], tuple[Callable[..., Any], ...]], outer: str, inner: str, order: str
) -> None:
    """A ValueError when the pipeline is made names the pair, and an order that is accepted."""
    with pytest.raises(ValueError, match="is written above") as raised:
        resilient.pipeline(*policies())
    message = str(raised.value)
    assert f"{outer} is written above {inner}" in message
    assert f"outermost first: {order} (the order is fallback, timeout" in message


@pytest.mark.parametrize(
    "policies",
    [
        # a limit per attempt, right under the retry or right around the call
        lambda: (timeout(2), retry(on=TimeoutError), timeout(0.1), breaker("pipeline-ok")),
        lambda: (retry(on=TimeoutError), breaker("pipeline-ok"), rate_limited(rate=9), timeout(1)),
        # a fallback just outside the part it covers
        lambda: (
            retry(on=ConnectionError),
            fallback(on=CircuitOpenError, value=None),
            breaker("pipeline-ok"),
        ),
        # a cache above the call's time budget, when hits must be as cheap as can be
        lambda: (cached(ttl=60), timeout(1), retry(on=ConnectionError)),
        # a bulkhead and a lock, either way round
        lambda: (lock("pipeline-ok"), bulkhead(max_concurrent=2)),
        lambda: (bulkhead(max_concurrent=2), lock("pipeline-ok")),
    ],
    ids=[
        "attempt-limit",
        "attempt-limit-innermost",
        "partial-fallback",
        "cache-over-timeout",
        "lock-bulkhead",
        "bulkhead-lock",
    ],
)
def test_the_documented_variants_of_the_order_are_accepted(
    policies: Callable[[], tuple[Callable[..., Any], ...]],
) -> None:
    """The places the composition page allows besides the main order make a pipeline."""
    assert isinstance(resilient.pipeline(*policies()), Pipeline)


@pytest.mark.parametrize(
    ("policies", "problem"),
    [
        (
            lambda: (timeout(0.5), retry(on=ConnectionError, wait=wait.constant(1))),
            r"@timeout\(0.5\) around @retry\(.*\) never retries",
        ),
        (
            lambda: (
                timeout(0.1),
                retry(on=TimeoutError, wait=wait.constant(0.05)),
                timeout(0.08),
            ),
            r"@timeout\(0.1\) around @retry\(.*\) around @timeout\(0.08\): an attempt cut off",
        ),
        (
            lambda: (retry(on=ConnectionError), fallback(on=OSError, value=None)),
            r"@retry\(.*\) around @fallback never retries ConnectionError",
        ),
    ],
    ids=["wait-outlasts-limit", "attempt-limit-leaves-no-time", "fallback-hides-retried"],
)
def test_a_stack_that_would_warn_by_hand_is_refused(
    policies: Callable[[], tuple[Callable[..., Any], ...]], problem: str
) -> None:
    """What a CompositionWarning reports on a stack written by hand is a ValueError here."""
    with pytest.raises(ValueError, match=rf"^resilient.pipeline\(\): {problem}"):
        resilient.pipeline(*policies())
    with pytest.warns(CompositionWarning, match=problem):
        stacked(policies(), lambda: None)


def refused(*policies: Callable[..., Any]) -> str | None:
    """Return why a pipeline of *policies* is refused, or None when it is made."""
    try:
        resilient.pipeline(*policies)
    except ValueError as refusal:
        return str(refusal)
    return None


POOL: dict[str, Callable[[], Callable[..., Any]]] = {
    "fallback": lambda: fallback(on=CircuitOpenError, value=None),
    "budget": lambda: timeout(5),
    "limit": lambda: timeout(0.5),
    "cached": lambda: cached(ttl=60),
    "idempotent": lambda: idempotent(key="request_id"),
    "retry": lambda: retry(on=ConnectionError, wait=wait.none()),
    "deduped": deduped,
    "breaker": lambda: breaker("pipeline-pool"),
    "bulkhead": lambda: bulkhead(max_concurrent=2),
    "lock": lambda: lock("pipeline-pool"),
    "rate_limited": lambda: rate_limited(rate=10),
}


@given(st.lists(st.sampled_from(sorted(POOL)), min_size=1, unique=True))
def test_the_order_a_refusal_proposes_is_accepted(names: list[str]) -> None:
    """Whatever the stack, it is accepted, or refused with an order of the same policies that is."""
    made = {label(policy): policy for policy in (POOL[name]() for name in names)}
    refusal = refused(*made.values())
    if refusal is not None:
        proposed = re.search(r"outermost first: (.*) \(the order is", refusal)
        assert proposed is not None, refusal
        labels = proposed[1].split(", ")
        assert sorted(labels) == sorted(made)
        assert refused(*(made[name] for name in labels)) is None


# --- with other decorators -------------------------------------------------------------------


def test_a_pipeline_over_resilient_decorators_takes_them_as_its_innermost_part() -> None:
    """In order, they fuse into the one wrapper; out of order, applying it is a ValueError."""
    original = Flaky(failures=0)
    fused = resilient.pipeline(timeout(2), retry(on=ConnectionError))(
        breaker("pipeline-over")(original)
    )
    assert [type(layer).__name__ for layer in layers_of(fused)] == [
        "_TimeoutLayer",
        "_RetryLayer",
        "_BreakerLayer",
    ]
    assert fused.__wrapped__ is original  # type: ignore[attr-defined]

    def fetch() -> None:
        pass

    with pytest.raises(ValueError, match=r"breaker\('pipeline-over'\) is written above retry"):
        resilient.pipeline(breaker("pipeline-over"))(retry(on=ConnectionError)(fetch))
    with pytest.raises(ValueError, match=r"never retries: its shortest wait"):
        resilient.pipeline(timeout(0.5))(retry(on=ConnectionError, wait=wait.constant(1))(fetch))


def test_a_resilient_decorator_above_a_pipeline_fuses_and_keeps_its_warnings() -> None:
    """Written above a pipelined function, a decorator joins its wrapper, and the warnings of a
    stack written by hand still tell of a stack that cannot work."""

    def fetch() -> str:
        return "ok"

    with pytest.warns(CompositionWarning, match="never retries"):
        fused = timeout(0.5)(
            resilient.pipeline(retry(on=ConnectionError, wait=wait.constant(1)))(fetch)
        )
    assert len(layers_of(fused)) == 2
    assert fused.__wrapped__ is fetch  # type: ignore[attr-defined]


def test_a_decorator_in_its_place_above_a_pipeline_is_not_warned_about() -> None:
    """A total budget written above a pipeline with a retry is the recommended order: silent."""
    flaky = Flaky(failures=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = timeout(1)(
            resilient.pipeline(
                retry(on=ConnectionError, attempts=2, wait=wait.none()), breaker("above-ok")
            )(flaky)
        )
    assert [type(layer).__name__ for layer in layers_of(fused)] == [
        "_TimeoutLayer",
        "_RetryLayer",
        "_BreakerLayer",
    ]
    assert fused("a") == "a"
    assert flaky.calls == 2


def test_a_decorator_above_a_pipeline_out_of_its_order_is_warned_about_at_its_line() -> None:
    """A breaker written over a pipeline of a retry is the pipeline's refusal, as a warning."""
    policy = resilient.pipeline(timeout(2), retry(on=ConnectionError, wait=wait.none()))
    flaky = Flaky(failures=1)
    with pytest.warns(CompositionWarning) as caught:
        fused = breaker("above-out-of-order")(policy(flaky))
    [warned] = caught
    assert warned.filename == __file__  # the user's line, though a Breaker applies it
    message = str(warned.message)
    assert message.startswith(
        "@breaker('above-out-of-order') written over a resilient.pipeline() on "
    )
    assert (
        "is out of its order: breaker('above-out-of-order') is written above timeout(2), but "
        "timeout goes above breaker: " in message
    )
    assert (
        "outermost first: timeout(2), retry(...), breaker('above-out-of-order') "
        "(the order is fallback, timeout" in message
    )
    assert fused("a") == "a"  # warned about, not refused: it runs as written
    assert breaker("above-out-of-order").stats().failures == 0  # it saw one call, a success


def test_hand_stacks_without_a_pipeline_are_not_checked_against_its_order() -> None:
    """The same stack as above, written by hand only, draws no warning, as ever."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @breaker("by-hand-only")
        @timeout(2)
        @retry(on=ConnectionError, wait=wait.none())
        def fetch() -> str:
            return "ok"

    assert fetch() == "ok"


def test_a_retry_above_a_pipeline_whose_fallback_answers_its_errors_is_warned_once() -> None:
    """The retry's own check reports it; the order allows a fallback under a retry."""

    def fetch() -> str:
        return "ok"

    policy = resilient.pipeline(fallback(on=OSError, value=None), breaker("above-fallback"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        retry(on=ConnectionError)(policy(fetch))
    assert [str(warned.message) for warned in caught] == [
        f"@retry({__name__}.{fetch.__qualname__}) around @fallback never retries "
        "ConnectionError: the fallback inside answers it first, so the retry never sees it "
        "fail. Put the @fallback outside the @retry"
    ]


def test_every_decorator_written_above_a_pipeline_is_checked_against_all_under_it() -> None:
    """Above other decorators above a pipeline, a decorator is checked; a pair warned about
    already is not warned about again."""

    def fetch() -> str:
        return "ok"

    piped = resilient.pipeline(retry(on=ConnectionError, wait=wait.none()))(fetch)
    with pytest.warns(CompositionWarning, match=r"bulkhead\(\.\.\.\) is written above retry"):
        outside = bulkhead(max_concurrent=2)(piped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        budgeted = timeout(5)(outside)  # in its place over both
    with pytest.warns(CompositionWarning, match=r"rate_limited\(\.\.\.\) is written above timeout"):
        rate_limited(rate=10)(budgeted)


@given(
    st.lists(st.sampled_from(sorted(POOL)), min_size=2, unique=True).filter(
        lambda names: refused(*(POOL[name]() for name in names[1:])) is None
    )
)
def test_a_decorator_above_a_pipeline_is_warned_about_as_the_pipeline_would_refuse_it(
    names: list[str],
) -> None:
    """Written over a pipeline, a decorator draws the refusal of a pipeline holding it too."""
    written, *piped = (POOL[name]() for name in names)

    def fetch(request_id: str) -> str:
        return request_id

    decorated = resilient.pipeline(*piped)(fetch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written(decorated)
    refusal = refused(written, *piped)
    on = f"{__name__}.{fetch.__qualname__}"
    expected = (
        []
        if refusal is None
        else [
            f"@{label(written)} written over a resilient.pipeline() on {on} is out of its "
            f"order: {refusal.removeprefix('resilient.pipeline(): ')}"
        ]
    )
    assert [str(warned.message) for warned in caught] == expected


def test_plain_decorators_go_above_the_pipeline_or_right_above_the_function() -> None:
    """A decorator of your own wraps the pipelined function, or is wrapped by the pipeline."""
    seen: list[str] = []

    def logged(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def log(*args: Any) -> Any:
            seen.append(function.__name__)
            return function(*args)

        return log

    policy = resilient.pipeline(retry(on=ConnectionError, attempts=2, wait=wait.none()))
    first, second = Flaky(failures=1), Flaky(failures=1)

    def above(value: str) -> str:
        return first(value)

    def under(value: str) -> str:
        return second(value)

    assert logged(policy(above))("a") == "a"
    assert policy(logged(under))("b") == "b"
    assert seen == ["above", "under", "under"]  # once around the retries; once per attempt


# --- bad input -------------------------------------------------------------------------------


def test_anything_but_a_resilient_decorator_is_refused_when_the_pipeline_is_made() -> None:
    """A TypeError names what was given and what to write instead."""
    with pytest.raises(TypeError, match="needs the policies to apply"):
        resilient.pipeline()
    with pytest.raises(TypeError, match=r"retry makes one: call it with its settings"):
        resilient.pipeline(retry)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"breaker makes one"):
        resilient.pipeline(timeout(1), breaker)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not <function cache.*goes outside the pipeline"):
        resilient.pipeline(functools.cache)
    with pytest.raises(TypeError, match="not 42"):
        resilient.pipeline(42)  # type: ignore[arg-type]

    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match=r"^resilient.pipeline\(\) cannot decorate the generator"):
        resilient.pipeline(retry(on=ConnectionError))(numbers)


def test_a_decorator_whose_layer_has_no_place_in_the_order_is_refused() -> None:
    """A capability the pipeline does not know is a TypeError, not a guess at its place."""

    class Unplaced:
        def build(self, inner: Any, target: Any) -> Any:
            return inner

    with pytest.raises(TypeError, match=r"has no place for .*Unplaced"):
        resilient.pipeline(Decorator(Unplaced(), "@unplaced"))


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_every_resilient_decorator_has_a_place(is_async: bool) -> None:
    """One of each, in the recommended order, makes a pipeline that runs the function once."""
    calls: list[str] = []
    policy = resilient.pipeline(
        fallback(on=CircuitOpenError, value=None),
        timeout(5),
        cached(ttl=60),
        idempotent(key="request_id"),
        retry(on=ConnectionError, wait=wait.none()),
        deduped(),
        breaker("pipeline-every"),
        bulkhead(max_concurrent=1),
        lock("pipeline-every"),
        rate_limited(rate=10),
    )

    def create(request_id: str) -> str:
        calls.append(request_id)
        return request_id

    async def acreate(request_id: str) -> str:
        return create(request_id)

    made = policy(acreate if is_async else create)
    assert len(layers_of(made)) == 10
    for _ in range(2):
        assert (run(made("r-1")) if is_async else made("r-1")) == "r-1"
    assert calls == ["r-1"]
