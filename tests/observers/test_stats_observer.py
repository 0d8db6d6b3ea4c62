"""StatsObserver: thread-safe in-memory counts and durations, read as plain data."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.observers import StatsObserver
from resilient.testing import FakeClock


def test_retry_calls_are_counted_per_kind_and_policy(fake_clock: FakeClock) -> None:
    """A failing retried call shows up as counts and delay/elapsed totals under its policy."""
    stats = StatsObserver()
    resilient.configure(observers=[stats])

    @resilient.retry(on=ConnectionError, attempts=3, wait=resilient.wait.linear(1, 1), name="pay")
    def pay() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            pay()
    assert stats.snapshot() == {
        "retry.exhausted": {
            "pay": {
                "count": 2,
                "durations": {"elapsed": {"count": 2, "total": 6.0, "max": 3.0}},
            }
        },
        "retry.scheduled": {
            "pay": {
                "count": 4,
                "durations": {"delay": {"count": 4, "total": 6.0, "max": 2.0}},
            }
        },
    }


def test_count_by_policy_and_in_total(failing_call: Callable[..., None]) -> None:
    """count() gives one policy's events, or every policy's when no policy is named."""
    stats = StatsObserver()
    resilient.configure(observers=[stats])
    failing_call(name="a")
    failing_call(name="b", attempts=4)
    assert stats.count("retry.scheduled", policy="a") == 2
    assert stats.count("retry.scheduled", policy="b") == 3
    assert stats.count("retry.scheduled") == 5
    assert stats.count("retry.exhausted") == 2
    assert stats.count("retry.scheduled", policy="c") == 0
    assert stats.count("breaker.opened") == 0
    assert repr(stats) == "<StatsObserver: 7 events>"


def test_snapshot_is_plain_detached_data(sample_event: Callable[..., Event]) -> None:
    """A snapshot is JSON-ready and neither changes with later events nor changes the stats."""
    stats = StatsObserver()
    stats(sample_event(RetryScheduled))
    first = stats.snapshot()
    first["retry.scheduled"]["orders.fetch"]["count"] = 99
    first["retry.scheduled"]["orders.fetch"]["durations"]["delay"]["max"] = 99.0
    stats(sample_event(RetryScheduled, delay=1.0))
    second = stats.snapshot()
    assert first["retry.scheduled"]["orders.fetch"]["count"] == 99
    assert json.loads(json.dumps(second)) == {
        "retry.scheduled": {
            "orders.fetch": {
                "count": 2,
                "durations": {"delay": {"count": 2, "total": 1.25, "max": 1.0}},
            }
        }
    }


def test_reset_forgets_everything(sample_event: Callable[..., Event]) -> None:
    """reset() empties the stats; counting starts again from zero."""
    stats = StatsObserver()
    stats(sample_event(RetriesExhausted))
    stats.reset()
    assert stats.snapshot() == {}
    stats(sample_event(RetriesExhausted))
    assert stats.count("retry.exhausted") == 1


def test_future_event_classes_need_no_change(future_event: Event) -> None:
    """An unseen event class is counted with its durations; None durations are left out."""
    stats = StatsObserver()
    stats(future_event)
    assert stats.snapshot() == {
        "test.refreshed": {
            "cache.profile": {
                "count": 1,
                "durations": {"took": {"count": 1, "total": 0.75, "max": 0.75}},
            }
        }
    }


def test_concurrent_threads_lose_no_update(sample_event: Callable[..., Event]) -> None:
    """Eight threads counting at once give exact counts, totals and maxima."""
    stats = StatsObserver()
    threads, per_thread = 8, 2_000
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        events = [
            sample_event(RetryScheduled, policy=f"p{index % 2}", delay=0.5 * (index + 1)),
            sample_event(RetriesExhausted, policy=f"p{index % 2}", elapsed=1.0),
        ]
        barrier.wait()
        for number in range(per_thread):
            stats(events[number % 2])

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    snapshot = stats.snapshot()
    half = per_thread // 2
    for policy, indexes in (("p0", (0, 2, 4, 6)), ("p1", (1, 3, 5, 7))):
        scheduled = snapshot["retry.scheduled"][policy]
        assert scheduled["count"] == 4 * half
        assert scheduled["durations"]["delay"] == {
            "count": 4 * half,
            "total": sum(0.5 * (index + 1) * half for index in indexes),
            "max": 0.5 * (indexes[-1] + 1),
        }
        assert snapshot["retry.exhausted"][policy]["durations"]["elapsed"]["total"] == 4 * half
    assert stats.count("retry.scheduled") + stats.count("retry.exhausted") == threads * per_thread


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_subnormal=False),
        ),
        max_size=50,
    )
)
def test_stats_match_a_reference_tally(delays: list[tuple[str, float]]) -> None:
    """For any sequence of events, counts, totals and maxima equal a plain tally of the same."""
    stats = StatsObserver()
    for policy, delay in delays:
        stats(RetryScheduled(policy=policy, time=0.0, attempt=1, delay=delay, error_type=None))
    expected: dict[str, dict[str, object]] = {}
    for policy in sorted({policy for policy, _ in delays}):
        mine = [delay for p, delay in delays if p == policy]
        total = 0.0
        for delay in mine:
            total += delay
        expected[policy] = {
            "count": len(mine),
            "durations": {"delay": {"count": len(mine), "total": total, "max": max(mine)}},
        }
    assert stats.snapshot() == ({"retry.scheduled": expected} if delays else {})
