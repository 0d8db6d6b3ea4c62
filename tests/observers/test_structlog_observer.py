"""StructlogObserver: the kind as the event name, the fields as key/values, at the event's level."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import structlog
from structlog.testing import capture_logs

import resilient
from resilient.events import Event, RetryScheduled, all_event_types
from resilient.observers import StructlogObserver


def test_retry_calls_log_one_entry_per_event(failing_call: Callable[..., None]) -> None:
    """A failing retried call logs each scheduled retry at info and the exhaustion at warning."""
    resilient.configure(observers=[StructlogObserver()])
    with capture_logs() as logs:
        failing_call()
    elapsed = logs[2]["elapsed"]
    assert logs == [
        {
            "event": "retry.scheduled",
            "log_level": "info",
            "policy": "fetch",
            "attempt": 1,
            "delay": 0.0,
            "error_type": "ConnectionError",
        },
        {
            "event": "retry.scheduled",
            "log_level": "info",
            "policy": "fetch",
            "attempt": 2,
            "delay": 0.0,
            "error_type": "ConnectionError",
        },
        {
            "event": "retry.exhausted",
            "log_level": "warning",
            "policy": "fetch",
            "attempts": 3,
            "elapsed": elapsed,
            "error_type": "ConnectionError",
            "reason": "attempts",
        },
    ]
    assert isinstance(elapsed, float)
    assert elapsed >= 0


def test_given_logger_keeps_its_bound_context(sample_event: Callable[..., Event]) -> None:
    """A logger passed in is used as is, with whatever it has bound."""
    observer = StructlogObserver(structlog.get_logger("app").bind(service="orders"))
    with capture_logs() as logs:
        observer(sample_event(RetryScheduled))
    assert logs == [
        {
            "event": "retry.scheduled",
            "log_level": "info",
            "service": "orders",
            "policy": "orders.fetch",
            "attempt": 2,
            "delay": 0.25,
            "error_type": "sample",
        }
    ]


def test_levels_override_the_event_severity(failing_call: Callable[..., None]) -> None:
    """levels= picks the method for a kind; other kinds keep their own severity."""
    resilient.configure(observers=[StructlogObserver(levels={"retry.exhausted": "error"})])
    with capture_logs() as logs:
        failing_call(attempts=2)
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("retry.scheduled", "info"),
        ("retry.exhausted", "error"),
    ]


def test_bad_levels_fail_at_construction() -> None:
    """An unknown kind in levels= raises ValueError."""
    with pytest.raises(ValueError, match="does not exist"):
        StructlogObserver(levels={"breaker.opend": "warning"})


def test_every_event_kind_logs_at_its_severity(sample_event: Callable[..., Event]) -> None:
    """Every event class logs under its kind at its own severity, without the clock reading."""
    observer = StructlogObserver()
    with capture_logs() as logs:
        for cls in all_event_types():
            observer(sample_event(cls))
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        (cls.kind, cls.severity) for cls in all_event_types()
    ]
    assert all("time" not in entry for entry in logs)


def test_future_event_classes_need_no_change(future_event: Event) -> None:
    """An event class the observer has never seen logs with all its fields."""
    with capture_logs() as logs:
        StructlogObserver()(future_event)
    assert logs == [
        {
            "event": "test.refreshed",
            "log_level": "error",
            "policy": "cache.profile",
            "took": 0.75,
            "waited": None,
            "outcome": "ok",
            "generation": 7,
        }
    ]
