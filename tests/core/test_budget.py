"""Retry budgets: BudgetWindow against a reference model, and RetryBudget's promises."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from strategies import bad_numbers

from resilient import RetryBudget
from resilient._core.budget import BudgetWindow

# BudgetWindow against a reference model --------------------------------------------------------


class BudgetWindowMachine(RuleBasedStateMachine):
    """Random calls, retries and clock steps; every decision checked two ways.

    The exact model keeps every event with the slot ("epoch") its time falls in, and counts the
    events of the last `slots` epochs, the current one included: a retry is allowed iff
    retries + 1 <= min_per_second * window + ratio * calls over those events.

    The time bound does not know about slots: an event younger than `window - slot width` is
    always counted, one `window` old or older never is. Whatever the slots do, a decision must
    allow what even the fewest calls and most retries allow, and refuse what even the most calls
    and fewest retries refuse.
    """

    @initialize(
        ratio=st.sampled_from([0.0, 0.2, 1.0]) | st.floats(min_value=0, max_value=3),
        # drawn as retries per window, so that calls and retries, not the reserve, decide
        reserve=st.sampled_from([0.0, 1.0, 2.5]) | st.floats(min_value=0, max_value=5),
        window=st.sampled_from([1.0, 10.0]) | st.floats(min_value=0.01, max_value=100),
        slots=st.integers(min_value=1, max_value=20),
        start=st.just(0.0) | st.floats(min_value=0, max_value=1e6),
    )
    def create(self, ratio: float, reserve: float, window: float, slots: int, start: float) -> None:
        min_per_second = reserve / window
        self.budget = BudgetWindow(ratio, min_per_second, window, slots)
        self.ratio = ratio
        self.reserve = min_per_second * window
        self.window = window
        self.slots = slots
        self.width = window / slots
        self.now = start
        self.events: list[tuple[float, int, str]] = []  # (time, epoch, "call" | "retry")

    def _epoch(self, now: float) -> int:
        return int(now // self.width)

    @rule(slots=st.integers(min_value=0, max_value=3) | st.integers(min_value=0, max_value=45))
    def advance_whole_slots(self, slots: int) -> None:
        self.now += slots * self.width

    @rule(fraction=st.floats(min_value=0, max_value=1.5))
    def advance_part_of_a_window(self, fraction: float) -> None:
        self.now += fraction * self.window

    @rule(calls=st.integers(min_value=1, max_value=5))
    def call(self, calls: int) -> None:
        for _ in range(calls):
            self.budget.record_call(self.now)
            self.events.append((self.now, self._epoch(self.now), "call"))

    @rule()
    def retry(self) -> None:
        self._decide()

    @rule()
    def retry_until_refused(self) -> None:
        # every burst ends on the exact edge of the budget, where a miscount shows; it ends
        # because each decision is checked against the model, which runs out
        while self._decide():
            pass

    def _decide(self) -> bool:
        allowed = self.budget.try_retry(self.now)

        oldest = self._epoch(self.now) - self.slots
        counted = [kind for _, epoch, kind in self.events if epoch > oldest]
        calls, retries = counted.count("call"), counted.count("retry")
        assert allowed == (retries + 1 <= self.reserve + self.ratio * calls)

        tolerance = 1e-9 * max(1.0, self.now)
        certain = [
            k for t, _, k in self.events if self.now - t < self.window - self.width - tolerance
        ]
        possible = [k for t, _, k in self.events if self.now - t < self.window + tolerance]
        if possible.count("retry") + 1 <= self.reserve + self.ratio * certain.count("call"):
            assert allowed
        if certain.count("retry") + 1 > self.reserve + self.ratio * possible.count("call"):
            assert not allowed

        if allowed:
            self.events.append((self.now, self._epoch(self.now), "retry"))
        return allowed


BudgetWindowMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_budget_window_matches_its_reference_model = BudgetWindowMachine.TestCase
test_budget_window_matches_its_reference_model.__doc__ = (
    "BudgetWindow allows a retry exactly when the retries and calls of its window allow it."
)


# RetryBudget ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ratio", "min_per_second", "window"])
@settings(max_examples=25)
@given(value=bad_numbers())
def test_negative_nan_and_infinite_settings_raise_value_error(name: str, value: float) -> None:
    """A negative, NaN or infinite ratio, reserve or window raises ValueError naming it."""
    with pytest.raises(ValueError, match=rf"^{name}="):
        RetryBudget(**{name: value})


@pytest.mark.parametrize("window", [0, 0.0, timedelta(0)])
def test_an_empty_window_raises_value_error(window: float | timedelta) -> None:
    """A window of zero seconds raises ValueError saying it must be more than zero."""
    with pytest.raises(ValueError, match=r"window=.*more than zero"):
        RetryBudget(window=window)


@pytest.mark.parametrize("name", ["ratio", "min_per_second", "window"])
@pytest.mark.parametrize("value", ["0.2", None, True, [1]])
def test_non_number_settings_raise_type_error(name: str, value: object) -> None:
    """A ratio, reserve or window that is not a number raises TypeError naming it."""
    with pytest.raises(TypeError, match=rf"^{name}="):
        RetryBudget(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ratio", "min_per_second"])
def test_rates_are_not_durations(name: str) -> None:
    """A ratio or a per-second reserve given as a timedelta is refused: it is not a duration."""
    with pytest.raises(TypeError, match=rf"^{name}="):
        RetryBudget(**{name: timedelta(seconds=1)})  # type: ignore[arg-type]


def test_window_accepts_a_timedelta() -> None:
    """A window given as a timedelta is kept as float seconds."""
    budget = RetryBudget(window=timedelta(milliseconds=2500))
    assert budget.window == 2.5
    assert isinstance(budget.window, float)


@given(
    ratio=st.floats(min_value=0, max_value=10),
    min_per_second=st.floats(min_value=0, max_value=100),
    window=st.floats(min_value=0.001, max_value=3600) | st.integers(1, 3600),
)
def test_repr_is_the_expression_that_builds_the_budget(
    ratio: float, min_per_second: float, window: float
) -> None:
    """A budget's repr evaluates to a budget with the same settings."""
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, window=window)
    rebuilt = eval(repr(budget), {"RetryBudget": RetryBudget})
    assert (rebuilt.ratio, rebuilt.min_per_second, rebuilt.window) == (
        ratio,
        min_per_second,
        float(window),
    )
    assert repr(rebuilt) == repr(budget)


def test_repr_shows_the_defaults() -> None:
    """The default budget's repr spells out its three settings."""
    assert repr(RetryBudget()) == "RetryBudget(ratio=0.2, min_per_second=10.0, window=10.0)"


def _retries_allowed_at(budget: RetryBudget, now: float, limit: int) -> int:
    allowed = 0
    while allowed <= limit and budget.try_retry(now):
        allowed += 1
    return allowed


@given(
    min_per_second=st.floats(min_value=0, max_value=10),
    window=st.floats(min_value=0.01, max_value=20),
    now=st.floats(min_value=0, max_value=1e6),
)
def test_min_per_second_is_a_reserve_without_traffic(
    min_per_second: float, window: float, now: float
) -> None:
    """With no calls at all, min_per_second * window retries are allowed in a window, no more."""
    budget = RetryBudget(ratio=0.5, min_per_second=min_per_second, window=window)
    reserve = min_per_second * window
    assert _retries_allowed_at(budget, now, limit=300) == math.floor(reserve)


@given(
    ratio=st.floats(min_value=0, max_value=2),
    calls=st.integers(min_value=0, max_value=150),
    now=st.floats(min_value=0, max_value=1e6),
)
def test_ratio_scales_with_calls(ratio: float, calls: int, now: float) -> None:
    """With no reserve, ratio * calls retries are allowed after that many calls, no more."""
    budget = RetryBudget(ratio=ratio, min_per_second=0, window=10)
    for _ in range(calls):
        budget.record_call(now)
    assert _retries_allowed_at(budget, now, limit=400) == math.floor(ratio * calls)


def test_retries_spent_are_counted_against_the_budget() -> None:
    """Each retry allowed uses up budget: one call at ratio 1 pays for exactly one retry."""
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=10)
    budget.record_call(0.0)
    assert budget.try_retry(0.5)
    assert not budget.try_retry(0.5)
    budget.record_call(1.0)
    assert budget.try_retry(1.5)
    assert not budget.try_retry(1.5)


@given(
    window=st.floats(min_value=0.1, max_value=100),
    start=st.floats(min_value=0, max_value=1e5),
    young=st.floats(min_value=0, max_value=0.9 * (1 - 1e-6)),
    old=st.floats(min_value=1 + 1e-6, max_value=5),
)
def test_old_calls_fall_out_of_the_window(
    window: float, start: float, young: float, old: float
) -> None:
    """Calls pay for retries while younger than 90% of the window, and never once a window old."""
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=window)
    for _ in range(2):
        budget.record_call(start)
    assert budget.try_retry(start + young * window)
    assert not budget.try_retry(start + old * window)


@given(
    window=st.floats(min_value=0.1, max_value=100),
    start=st.floats(min_value=0, max_value=1e5),
    later=st.floats(min_value=1 + 1e-6, max_value=5),
)
def test_a_spent_reserve_comes_back_a_window_later(
    window: float, start: float, later: float
) -> None:
    """Retries spent fall out of the window too, so the reserve is whole again a window later."""
    budget = RetryBudget(ratio=0, min_per_second=3 / window, window=window)
    reserve = math.floor(3 / window * window)
    assert _retries_allowed_at(budget, start, limit=10) == reserve
    assert _retries_allowed_at(budget, start + later * window, limit=10) == reserve
