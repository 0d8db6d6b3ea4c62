"""The breaker's sliding windows agree with a plain list of outcomes, whatever the sequence."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from resilient._core.window import BUCKETS, FAILURE, SLOW, CountWindow, TimeWindow

OUTCOMES = st.sampled_from([0, FAILURE, SLOW, FAILURE | SLOW])

# one step: ("add", outcome, seconds later), ("successes", count, seconds later) or ("clear",)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), OUTCOMES, st.floats(0, 3)),
        st.tuples(st.just("successes"), st.integers(1, 30), st.floats(0, 3)),
        st.tuples(st.just("clear"), st.just(0), st.just(0.0)),
    ),
    max_size=80,
)


def counts(outcomes: list[int]) -> tuple[int, int, int]:
    """Return (calls, failures, slow) of a list of outcomes."""
    return (
        len(outcomes),
        sum(1 for outcome in outcomes if outcome & FAILURE),
        sum(1 for outcome in outcomes if outcome & SLOW),
    )


@given(size=st.integers(1, 12), steps=STEPS)
def test_a_count_window_holds_the_last_size_outcomes(
    size: int, steps: list[tuple[str, int, float]]
) -> None:
    """After any sequence of outcomes, bulk successes and clears, the counts are the last *size*."""
    window = CountWindow(size)
    seen: list[int] = []
    for action, value, _ in steps:
        if action == "add":
            window.add(value, 0.0)
            seen.append(value)
        elif action == "successes":
            window.add_successes(value, 0.0)
            seen.extend([0] * value)
        else:
            window.clear()
            seen.clear()
        assert (window.calls, window.failures, window.slow) == counts(seen[-size:])


@given(seconds=st.floats(0.5, 20), steps=STEPS, start=st.floats(0, 1000))
def test_a_time_window_holds_the_outcomes_of_its_last_buckets(
    seconds: float, steps: list[tuple[str, int, float]], start: float
) -> None:
    """The counts are those of the outcomes in the current bucket and the BUCKETS - 1 before it."""
    window = TimeWindow(seconds)
    width = seconds / BUCKETS
    now = start
    seen: list[tuple[int, int]] = []  # (bucket, outcome)
    for action, value, later in steps:
        now += later
        bucket = math.floor(now / width)
        if action == "add":
            window.add(value, now)
            seen.append((bucket, value))
        elif action == "successes":
            window.add_successes(value, now)
            seen.extend([(bucket, 0)] * value)
        else:
            window.clear()
            seen.clear()
        window.advance(now)
        alive = [outcome for at, outcome in seen if at > bucket - BUCKETS]
        assert (window.calls, window.failures, window.slow) == counts(alive)


def test_an_outcome_leaves_a_time_window_within_one_bucket_of_its_length() -> None:
    """A failure at t counts at t + 0.9 * window and is gone at t + window."""
    window = TimeWindow(10.0)
    window.add(FAILURE, 100.0)
    window.advance(109.0)
    assert window.failures == 1
    window.advance(110.0)
    assert (window.calls, window.failures) == (0, 0)
