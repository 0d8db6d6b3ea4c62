"""Wait strategies (resilient/_core/backoff.py): bounds, growth, combinators, reprs, validation."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from fractions import Fraction

import attrs
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from strategies import (
    WaitCase,
    attempts,
    bad_numbers,
    durations,
    previous_waits,
    random_seeds,
    seconds,
    seconds_of,
    wait_cases,
    waits,
)

from resilient import wait
from resilient.typing import Wait

NAMESPACE = {name: getattr(wait, name) for name in wait.__all__}

BIG_ATTEMPTS = [1, 2, 1_100, 10_000, 1_000_000, 2**63]


def _exponentials() -> st.SearchStrategy[Wait]:
    return st.builds(
        wait.exponential,
        initial=durations(),
        multiplier=st.floats(min_value=1, max_value=100) | st.integers(1, 100),
        max=durations(),
    )


def _linears(capped: bool) -> st.SearchStrategy[Wait]:
    return st.builds(
        wait.linear,
        start=durations(),
        step=durations(),
        max=durations() if capped else st.none(),
    )


def _deterministic() -> st.SearchStrategy[Wait]:
    return st.one_of(
        st.just(wait.none()),
        durations().map(wait.constant),
        _exponentials(),
        _linears(capped=True),
        _linears(capped=False),
    )


# Every strategy ---------------------------------------------------------------------------------


@settings(deadline=None)
@given(case=wait_cases(), attempt=attempts(), previous=previous_waits(), seed=random_seeds())
def test_every_strategy_returns_finite_non_negative_seconds(
    case: WaitCase, attempt: int, previous: float, seed: object
) -> None:
    """Every built-in strategy, nested or not, returns finite seconds >= 0 at any attempt."""
    delay = case.wait(attempt, previous)
    assert isinstance(delay, float)
    assert math.isfinite(delay)
    assert delay >= 0


@settings(deadline=None)
@given(case=wait_cases(), attempt=attempts(), previous=previous_waits(), seed=random_seeds())
def test_every_strategy_stays_within_the_bounds_its_expression_implies(
    case: WaitCase, attempt: int, previous: float, seed: object
) -> None:
    """Jitter, sums, caps and chains stay between the bounds their parts imply."""
    delay = case.wait(attempt, previous)
    assert case.low(attempt) <= delay <= case.high(attempt)


@pytest.mark.parametrize("attempt", BIG_ATTEMPTS)
@pytest.mark.parametrize(
    ("initial", "multiplier", "maximum"),
    [
        (0.1, 2.0, 30.0),
        (1e-300, 2.0, 1e10),  # max / initial overflows a float
        (2.2250738585072014e-308, 2.0, 4.0),  # the smallest normal float as initial
        (1e-200, 10.0, 1e200),  # the power overflows long before the product reaches max
        (1e-6, 1.0000001, 1e300),  # a slow climb to a huge max
        (0.0, 2.0, 30.0),
        (50.0, 2.0, 30.0),
        (0.5, 1.0, 30.0),
    ],
)
def test_exponential_never_overflows(
    initial: float, multiplier: float, maximum: float, attempt: int
) -> None:
    """Exponential growth is capped before it can overflow, whatever the attempt number."""
    delay = wait.exponential(initial=initial, multiplier=multiplier, max=maximum)(attempt, 0.0)
    assert math.isfinite(delay)
    assert 0 <= delay <= maximum


@pytest.mark.parametrize("attempt", BIG_ATTEMPTS)
def test_full_jitter_of_an_exponential_never_overflows(attempt: int) -> None:
    """The default kind of strategy (jittered exponential) survives attempt 1,000,000 and beyond."""
    delay = wait.full_jitter(wait.exponential(initial=1e-300, max=1e10))(attempt, 0.0)
    assert 0 <= delay <= 1e10


def test_strategies_satisfy_the_wait_protocol_and_are_immutable() -> None:
    """Built-in strategies are Wait callables that cannot be changed after construction."""
    strategy = wait.exponential()
    assert isinstance(strategy, Wait)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        strategy.max = 1.0  # type: ignore[attr-defined, misc]


# Single strategies ------------------------------------------------------------------------------


@given(duration=durations(), attempt=attempts(), previous=previous_waits())
def test_constant_always_waits_its_seconds(
    duration: float | timedelta, attempt: int, previous: float
) -> None:
    """constant(s) waits s seconds (a timedelta is read as its seconds) at every attempt."""
    assert wait.constant(duration)(attempt, previous) == seconds_of(duration)


@given(attempt=attempts(), previous=previous_waits())
def test_none_never_waits(attempt: int, previous: float) -> None:
    """none() waits zero seconds at every attempt."""
    assert wait.none()(attempt, previous) == 0.0


@example(initial=1e-300, multiplier=2.0, maximum=1e10, attempt=1026)  # 2.0**1025 overflows
@given(
    initial=seconds(1e3) | st.sampled_from([1e-300, 2.2250738585072014e-308]),
    multiplier=st.floats(min_value=1, max_value=10),
    maximum=seconds(),
    attempt=st.integers(min_value=1, max_value=1_200),
)
def test_exponential_follows_its_formula(
    initial: float, multiplier: float, maximum: float, attempt: int
) -> None:
    """exponential waits initial * multiplier ** (attempt - 1), capped at max, exactly."""
    exact = Fraction(initial) * Fraction(multiplier) ** (attempt - 1)
    expected = maximum if exact >= Fraction(maximum) else float(exact)
    delay = wait.exponential(initial=initial, multiplier=multiplier, max=maximum)(attempt, 0.0)
    # float powers round, and the saturation point is found with logarithms
    assert math.isclose(delay, expected, rel_tol=1e-9)
    assert delay <= maximum


@given(
    initial=durations(),
    multiplier=st.floats(min_value=1, max_value=100) | st.integers(1, 100),
    maximum=durations(),
    first=attempts(),
    second=attempts(),
)
def test_exponential_is_non_decreasing_and_capped(
    initial: float, multiplier: float, maximum: float, first: int, second: int
) -> None:
    """exponential never waits less after a later attempt, and never more than its max."""
    strategy = wait.exponential(initial=initial, multiplier=multiplier, max=maximum)
    early, late = sorted((first, second))
    assert strategy(early, 0.0) <= strategy(late, 0.0) <= seconds_of(maximum)


@given(
    start=durations(),
    step=durations(),
    maximum=st.none() | durations(),
    attempt=attempts(),
)
def test_linear_follows_its_formula(
    start: float | timedelta, step: float | timedelta, maximum: float | None, attempt: int
) -> None:
    """linear waits start + step * (attempt - 1), capped at max when one is given."""
    expected = seconds_of(start) + seconds_of(step) * (attempt - 1)
    if maximum is not None:
        expected = min(expected, seconds_of(maximum))
    assert wait.linear(start=start, step=step, max=maximum)(attempt, 0.0) == expected


@given(
    start=durations(),
    step=durations(),
    maximum=st.none() | durations(),
    first=attempts(),
    second=attempts(),
)
def test_linear_is_non_decreasing_and_capped(
    start: float, step: float, maximum: float | None, first: int, second: int
) -> None:
    """linear never waits less after a later attempt, and never more than its max."""
    strategy = wait.linear(start=start, step=step, max=maximum)
    early, late = sorted((first, second))
    assert strategy(early, 0.0) <= strategy(late, 0.0)
    if maximum is not None:
        assert strategy(late, 0.0) <= seconds_of(maximum)


@given(inner=_deterministic(), attempt=attempts(), previous=previous_waits(), seed=random_seeds())
def test_full_jitter_stays_between_zero_and_the_inner_wait(
    inner: Wait, attempt: int, previous: float, seed: object
) -> None:
    """full_jitter waits between zero and what the wrapped strategy says."""
    delay = wait.full_jitter(inner)(attempt, previous)
    assert 0.0 <= delay <= inner(attempt, previous)


@given(inner=_deterministic(), attempt=attempts(), previous=previous_waits(), seed=random_seeds())
def test_equal_jitter_stays_between_half_and_all_of_the_inner_wait(
    inner: Wait, attempt: int, previous: float, seed: object
) -> None:
    """equal_jitter waits between half and all of what the wrapped strategy says."""
    whole = inner(attempt, previous)
    assert whole / 2 <= wait.equal_jitter(inner)(attempt, previous) <= whole


@pytest.mark.parametrize("edge", ["low", "high"])
def test_jitter_reaches_but_never_passes_the_edges_of_its_range(
    monkeypatch: pytest.MonkeyPatch, edge: str
) -> None:
    """With the random draw at either end, each jitter lands exactly on the edge of its range."""

    def extreme(low: float, high: float) -> float:
        return low if edge == "low" else high

    monkeypatch.setattr(random, "uniform", extreme)
    inner = wait.constant(8)
    decorrelated = wait.decorrelated_jitter(initial=1, max=10)
    if edge == "low":
        assert wait.full_jitter(inner)(1, 0.0) == 0.0
        assert wait.equal_jitter(inner)(1, 0.0) == 4.0
        assert decorrelated(5, 2.0) == 1.0
    else:
        assert wait.full_jitter(inner)(1, 0.0) == 8.0
        assert wait.equal_jitter(inner)(1, 0.0) == 8.0
        assert decorrelated(5, 2.0) == 6.0  # three times the previous wait
        assert decorrelated(5, 20.0) == 10.0  # but never more than max


def test_full_jitter_spreads_its_waits() -> None:
    """full_jitter draws different waits, not one fixed fraction of the inner wait."""
    strategy = wait.full_jitter(wait.constant(10))
    assert len({strategy(1, 0.0) for _ in range(50)}) > 1


@given(
    initial=seconds(1e3),
    extra=seconds(),
    previous=previous_waits(),
    attempt=attempts(),
    seed=random_seeds(),
)
def test_decorrelated_jitter_stays_between_initial_and_three_times_the_previous_wait(
    initial: float, extra: float, previous: float, attempt: int, seed: object
) -> None:
    """decorrelated_jitter waits in [initial, max(initial, min(max, 3 * previous))]."""
    cap = initial + extra
    delay = wait.decorrelated_jitter(initial=initial, max=cap)(attempt, previous)
    upper = max(initial, min(cap, 3 * previous))
    assert initial <= delay <= cap
    # uniform(a, b) computes a + (b - a) * r, which may round one ulp past b
    assert delay <= math.nextafter(upper, math.inf)


@given(initial=seconds(1e3), extra=seconds())
def test_decorrelated_jitter_starts_at_initial(initial: float, extra: float) -> None:
    """After the first attempt (previous wait 0) decorrelated_jitter waits exactly initial."""
    assert wait.decorrelated_jitter(initial=initial, max=initial + extra)(1, 0.0) == initial


# Combinators ------------------------------------------------------------------------------------


@given(
    values=st.lists(seconds(), min_size=1, max_size=6),
    attempt=attempts(),
    previous=previous_waits(),
)
def test_chain_picks_the_strategy_for_the_attempt_and_repeats_the_last(
    values: list[float], attempt: int, previous: float
) -> None:
    """chain uses its n-th strategy after attempt n, and its last one after every later attempt."""
    strategy = wait.chain(*map(wait.constant, values))
    assert strategy(attempt, previous) == values[min(attempt, len(values)) - 1]


def test_chain_passes_attempt_and_previous_through() -> None:
    """chain calls the chosen strategy with the real attempt number and previous wait."""
    seen: list[tuple[int, float]] = []

    def recording(attempt: int, previous: float) -> float:
        seen.append((attempt, previous))
        return 1.0

    strategy = wait.chain(wait.constant(5), recording)
    strategy(1, 0.0)
    strategy(2, 0.25)
    strategy(7, 3.5)
    assert seen == [(2, 0.25), (7, 3.5)]


@given(values=st.lists(seconds(), min_size=1, max_size=6), attempt=attempts())
def test_add_sums_its_strategies(values: list[float], attempt: int) -> None:
    """add waits the sum of what each of its strategies says."""
    assert wait.add(*map(wait.constant, values))(attempt, 0.0) == sum(values)


@given(
    inner=waits(),
    cap=durations(),
    attempt=attempts(),
    previous=previous_waits(),
    seed=random_seeds(),
)
def test_capped_never_exceeds_its_max(
    inner: Wait, cap: float | timedelta, attempt: int, previous: float, seed: object
) -> None:
    """capped(w, max=m) never waits more than m, whatever w is."""
    assert 0 <= wait.capped(inner, max=cap)(attempt, previous) <= seconds_of(cap)


@given(value=seconds(), cap=seconds(), attempt=attempts())
def test_capped_keeps_waits_under_its_max(value: float, cap: float, attempt: int) -> None:
    """capped leaves a wait below its max unchanged and lowers one above it to max."""
    assert wait.capped(wait.constant(value), max=cap)(attempt, 0.0) == min(value, cap)


# Reprs ------------------------------------------------------------------------------------------


@given(strategy=waits())
def test_repr_is_the_expression_that_builds_the_strategy(strategy: Wait) -> None:
    """Evaluating a strategy's repr with resilient.wait's functions builds an equal strategy."""
    rebuilt = eval(repr(strategy), dict(NAMESPACE))
    assert rebuilt == strategy
    assert repr(rebuilt) == repr(strategy)


@given(strategy=_deterministic(), attempt=attempts())
def test_a_rebuilt_strategy_waits_the_same(strategy: Wait, attempt: int) -> None:
    """A strategy rebuilt from its repr waits exactly what the original waits."""
    rebuilt = eval(repr(strategy), dict(NAMESPACE))
    assert rebuilt(attempt, 0.0) == strategy(attempt, 0.0)


@pytest.mark.parametrize(
    ("strategy", "text"),
    [
        (wait.none(), "none()"),
        (wait.constant(0), "none()"),
        (wait.constant(timedelta(milliseconds=1500)), "constant(1.5)"),
        (wait.exponential(), "exponential(initial=0.1, multiplier=2.0, max=30.0)"),
        (wait.linear(1, 2), "linear(start=1.0, step=2.0, max=None)"),
        (
            wait.full_jitter(wait.exponential(initial=0.2, max=5)),
            "full_jitter(exponential(initial=0.2, multiplier=2.0, max=5.0))",
        ),
        (
            wait.add(wait.constant(1), wait.equal_jitter(wait.constant(2))),
            "add(constant(1.0), equal_jitter(constant(2.0)))",
        ),
        (
            wait.chain(wait.none(), wait.capped(wait.decorrelated_jitter(), max=3)),
            "chain(none(), capped(decorrelated_jitter(initial=0.1, max=30.0), max=3.0))",
        ),
    ],
)
def test_repr_reads_like_the_call(strategy: Wait, text: str) -> None:
    """A repr names the public function and its normalised float arguments."""
    assert repr(strategy) == text


# Validation -------------------------------------------------------------------------------------

DURATION_ARGUMENTS = [
    pytest.param("seconds", wait.constant, id="constant"),
    pytest.param("start", lambda value: wait.linear(start=value), id="linear-start"),
    pytest.param("step", lambda value: wait.linear(step=value), id="linear-step"),
    pytest.param("max", lambda value: wait.linear(max=value), id="linear-max"),
    pytest.param(
        "initial", lambda value: wait.exponential(initial=value), id="exponential-initial"
    ),
    pytest.param("max", lambda value: wait.exponential(max=value), id="exponential-max"),
    pytest.param(
        "initial", lambda value: wait.decorrelated_jitter(initial=value), id="decorrelated-initial"
    ),
    pytest.param(
        "max", lambda value: wait.decorrelated_jitter(initial=0, max=value), id="decorrelated-max"
    ),
    pytest.param("max", lambda value: wait.capped(wait.none(), max=value), id="capped-max"),
]
BUILDERS = [pytest.param(param.values[1], id=param.id) for param in DURATION_ARGUMENTS]


@pytest.mark.parametrize(("name", "build"), DURATION_ARGUMENTS)
@settings(max_examples=30)
@given(value=bad_numbers())
def test_negative_nan_and_infinite_durations_raise_value_error(name, build, value) -> None:
    """A negative, NaN or infinite duration raises ValueError naming the argument."""
    with pytest.raises(ValueError, match=rf"^{name}=") as raised:
        build(value)
    assert "negative" in str(raised.value) or "finite" in str(raised.value)


@pytest.mark.parametrize(("name", "build"), DURATION_ARGUMENTS)
@pytest.mark.parametrize("value", ["1", b"1", True, [1], 1j])
def test_non_numbers_as_durations_raise_type_error(name, build, value) -> None:
    """A duration that is not a number or timedelta raises TypeError showing how to write one."""
    with pytest.raises(TypeError, match=rf"^{name}=.*not a duration.*timedelta"):
        build(value)


@pytest.mark.parametrize("build", BUILDERS)
def test_negative_timedeltas_raise_value_error(build) -> None:
    """A negative timedelta is refused like a negative number."""
    with pytest.raises(ValueError, match="negative"):
        build(timedelta(seconds=-1))


@given(multiplier=st.floats(max_value=1, exclude_max=True, allow_nan=False) | st.just(math.nan))
def test_multiplier_below_one_raises_value_error(multiplier: float) -> None:
    """exponential refuses a multiplier below 1 (or NaN), saying it must be at least 1."""
    with pytest.raises(ValueError, match="at least 1"):
        wait.exponential(multiplier=multiplier)


def test_infinite_multiplier_raises_value_error() -> None:
    """exponential refuses an infinite multiplier, asking for a finite one."""
    with pytest.raises(ValueError, match="finite"):
        wait.exponential(multiplier=math.inf)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(wait.constant, id="duration"),
        pytest.param(lambda value: wait.exponential(multiplier=value), id="multiplier"),
    ],
)
def test_integers_too_large_for_a_float_raise_value_error(build) -> None:
    """An integer beyond any float (10**400) is refused with ValueError, not OverflowError."""
    with pytest.raises(ValueError, match="finite"):
        build(10**400)


@pytest.mark.parametrize("multiplier", ["2", None, True, [2]])
def test_non_number_multiplier_raises_type_error(multiplier: object) -> None:
    """exponential refuses a multiplier that is not a number, showing one that is."""
    with pytest.raises(TypeError, match="multiplier=2"):
        wait.exponential(multiplier=multiplier)  # type: ignore[arg-type]


@given(maximum=seconds(1e3), extra=seconds(min_value=1e-3))
def test_decorrelated_initial_above_max_raises_value_error(maximum: float, extra: float) -> None:
    """decorrelated_jitter refuses an initial wait above max and says to lower it."""
    assume(maximum + extra > maximum)
    with pytest.raises(ValueError, match="lower initial"):
        wait.decorrelated_jitter(initial=maximum + extra, max=maximum)


@pytest.mark.parametrize(
    "build",
    [
        wait.full_jitter,
        wait.equal_jitter,
        wait.add,
        pytest.param(lambda value: wait.add(wait.none(), value), id="add-second"),
        pytest.param(lambda value: wait.capped(value, max=1), id="capped"),
        wait.chain,
        pytest.param(lambda value: wait.chain(wait.none(), value), id="chain-second"),
    ],
)
@pytest.mark.parametrize("value", [1.5, "exponential", None, wait])
def test_combinators_refuse_non_callables(build, value) -> None:
    """A combinator given something that is not a strategy raises TypeError naming the fix."""
    with pytest.raises(TypeError, match=r"not a wait strategy.*resilient\.wait\.exponential\(\)"):
        build(value)


@pytest.mark.parametrize("combinator", [wait.add, wait.chain])
def test_empty_add_and_chain_raise_type_error(combinator) -> None:
    """add() and chain() with no strategies raise TypeError asking for at least one."""
    with pytest.raises(TypeError, match="at least one wait strategy"):
        combinator()


@example(value=0.0)
@given(value=seconds(30.0))
def test_validation_accepts_every_valid_duration(value: float) -> None:
    """Every finite duration from 0 to 30 s is accepted by every strategy that takes one."""
    for param in BUILDERS:
        param.values[0](value)
