"""The breaker core as plain data, and its journal replayed elsewhere: what sharing rests on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import BreakerPolicy, BreakerState
from resilient._core.breaker import BreakerCore, Exchange, Permit
from resilient._core.window import FAILURE, SLOW

POLICIES = st.sampled_from(
    [
        BreakerPolicy(window=5, minimum_calls=3, failure_rate=0.5, open_for=2),
        BreakerPolicy(window=8, minimum_calls=2, consecutive_failures=2, slow_call_after=1.0),
        BreakerPolicy(window=timedelta(seconds=10), minimum_calls=3, half_open_calls=2),
    ]
)
# one step: a closed outcome (an int), a run of quick successes ("ok", n), time passing
# ("wait", s), or a probe asked for and answered ("probe", outcome)
STEPS = st.lists(
    st.one_of(
        st.sampled_from([0, FAILURE, SLOW, FAILURE | SLOW]),
        st.tuples(st.just("ok"), st.integers(1, 12)),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 2.0, 5.0])),
        st.tuples(st.just("probe"), st.sampled_from([0, FAILURE])),
    ),
    max_size=40,
)


def drive(core: BreakerCore, steps: list[object], now: float = 100.0) -> float:
    """Apply *steps* to *core* the way a driver would; return the time at the end."""
    for step in steps:
        if isinstance(step, int):
            permit, _ = core.admit(now)
            if not isinstance(permit, float):
                core.record(permit, step, now)
        elif step[0] == "ok":  # type: ignore[index]
            if core.counter is not None:
                for _ in range(step[1]):  # type: ignore[index]
                    next(core.counter)
        elif step[0] == "wait":  # type: ignore[index]
            now += step[1]  # type: ignore[index]
            core.tick(now)
        else:
            permit, _ = core.admit(now)
            if isinstance(permit, Permit):
                core.record(permit, step[1], now)  # type: ignore[index]
    return now


@given(policy=POLICIES, steps=STEPS)
def test_a_state_read_back_from_its_data_is_the_same_state(
    policy: BreakerPolicy, steps: list[object]
) -> None:
    """to_data then from_data gives a breaker whose data is the same, whatever it went through."""
    core = BreakerCore(policy)
    now = drive(core, steps)
    data = core.to_data(now)
    again = BreakerCore.from_data(policy, data)
    assert again.to_data(now) == data


@given(policy=POLICIES, steps=STEPS)
def test_a_journal_replayed_on_the_stored_state_gives_what_the_process_saw(
    policy: BreakerPolicy, steps: list[object]
) -> None:
    """A process's closed outcomes, applied elsewhere as an Exchange, make the same window."""
    core = BreakerCore(policy)
    stored = BreakerCore.from_data(policy, core.to_data(100.0))
    core.journal = []
    closed = [step for step in steps if isinstance(step, int) or step[0] == "ok"]  # type: ignore[index]
    drive(core, closed)
    core.to_data(100.0)  # folds the quick successes in
    transitions, _ = stored.apply(Exchange(epoch=0, outcomes=tuple(core.journal)), 100.0)
    assert [t.target for t in transitions] == ([BreakerState.OPEN] if core.trips else [])
    for field in ("state", "consecutive", "trips", "window"):
        assert stored.to_data(100.0)[field] == core.to_data(100.0)[field], field


def test_outcomes_of_an_epoch_that_ended_are_not_replayed() -> None:
    """An exchange from a closed epoch that is over counts nothing in the stored state."""
    policy = BreakerPolicy(consecutive_failures=1, failure_rate=None)
    stored = BreakerCore(policy)
    stored.apply(Exchange(epoch=0, outcomes=(FAILURE,)), 0.0)
    assert stored.state is BreakerState.OPEN
    stored.apply(Exchange(action="close"), 1.0)
    stored.apply(Exchange(epoch=0, outcomes=(FAILURE, FAILURE)), 2.0)
    assert (stored.state, stored.window.calls) == (BreakerState.CLOSED, 0)


def test_an_exchange_asks_for_a_probe_and_reports_it() -> None:
    """admit=True past the open time gives a probe's permit; its report closes the breaker."""
    stored = BreakerCore(BreakerPolicy(consecutive_failures=1, failure_rate=None, open_for=5))
    stored.apply(Exchange(epoch=0, outcomes=(FAILURE,)), 0.0)
    _, refused = stored.apply(Exchange(admit=True), 4.0)
    assert refused == 1.0
    transitions, permit = stored.apply(Exchange(admit=True), 5.0)
    assert isinstance(permit, Permit)
    assert [t.target for t in transitions] == [BreakerState.HALF_OPEN]
    transitions, _ = stored.apply(Exchange(probes=((permit, 0),)), 6.0)
    assert [t.target for t in transitions] == [BreakerState.CLOSED]
    assert stored.rejected == 0  # the asking process counts the refusal it got


@pytest.mark.parametrize(
    "data",
    [None, "open", {"state": "ajar"}, {"state": "open", "epoch": "x"}, {}, [1, 2]],
)
def test_data_that_is_not_a_state_is_refused(data: object) -> None:
    """from_data raises ValueError for anything to_data did not make."""
    with pytest.raises(ValueError, match="not a breaker's state"):
        BreakerCore.from_data(BreakerPolicy(), data)


def test_a_window_of_other_settings_starts_empty() -> None:
    """State stored under another window size keeps its state but not its window."""
    core = BreakerCore(BreakerPolicy(window=10, minimum_calls=2))
    permit, _ = core.admit(0.0)
    assert not isinstance(permit, float)
    core.record(permit, FAILURE, 0.0)
    wider = BreakerCore.from_data(BreakerPolicy(window=20, minimum_calls=2), core.to_data(0.0))
    assert (wider.window.calls, wider.consecutive) == (0, 1)
