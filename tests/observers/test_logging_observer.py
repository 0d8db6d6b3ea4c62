"""LoggingObserver: one standard-library record per event, at the event's level."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import resilient
from resilient.events import Event, RetriesExhausted, RetryScheduled, all_event_types
from resilient.observers import LoggingObserver

LOGGER = "tests.observers.app"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record of the test logger, from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def test_default_logger_is_resilient() -> None:
    """Without a logger, events go to the "resilient" logger."""
    observer = LoggingObserver()
    assert observer.logger is logging.getLogger("resilient")
    assert repr(observer).startswith("LoggingObserver(logger=<Logger resilient")


def test_retry_calls_log_one_record_per_event(
    log: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """A failing retried call logs each scheduled retry at INFO and the exhaustion at WARNING."""
    resilient.configure(observers=[LoggingObserver(logging.getLogger(LOGGER))])
    failing_call()
    elapsed = log.records[2].resilient_event.elapsed  # type: ignore[attr-defined]  # set by extra=
    assert [(r.levelno, r.getMessage()) for r in log.records] == [
        (logging.INFO, "retry.scheduled policy=fetch attempt=1 delay=0 error_type=ConnectionError"),
        (logging.INFO, "retry.scheduled policy=fetch attempt=2 delay=0 error_type=ConnectionError"),
        (
            logging.WARNING,
            f"retry.exhausted policy=fetch attempts=3 elapsed={elapsed:.6g}"
            " error_type=ConnectionError reason=attempts",
        ),
    ]
    assert [r.name for r in log.records] == [LOGGER] * 3


def test_record_carries_the_event(
    log: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """Handlers find the event object itself as record.resilient_event."""
    resilient.configure(observers=[LoggingObserver(logging.getLogger(LOGGER))])
    failing_call(attempts=2)
    events = [r.resilient_event for r in log.records]  # type: ignore[attr-defined]  # set by extra=
    assert [type(e) for e in events] == [RetryScheduled, RetriesExhausted]
    assert events[0].attempt == 1
    assert events[1].reason == "attempts"


def test_message_quotes_values_with_spaces_and_writes_none(
    log: pytest.LogCaptureFixture, sample_event: Callable[..., Event]
) -> None:
    """Values with spaces, quotes or '=' are quoted; None is written as none; time is left out."""
    observer = LoggingObserver(logging.getLogger(LOGGER))
    observer(sample_event(RetryScheduled, policy="my policy", error_type=None, delay=1 / 3))
    observer(sample_event(RetryScheduled, policy="a=b"))
    assert [r.getMessage() for r in log.records] == [
        "retry.scheduled policy='my policy' attempt=2 delay=0.333333 error_type=none",
        "retry.scheduled policy='a=b' attempt=2 delay=0.25 error_type=sample",
    ]


def test_levels_override_the_event_severity(
    log: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """levels= sets the level of a kind; other kinds keep their own severity."""
    observer = LoggingObserver(logging.getLogger(LOGGER), levels={"retry.scheduled": "debug"})
    resilient.configure(observers=[observer])
    failing_call()
    assert [r.levelno for r in log.records] == [logging.DEBUG, logging.DEBUG, logging.WARNING]


def test_disabled_levels_log_nothing(
    caplog: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """A logger set to WARNING gets only the exhaustion record."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    resilient.configure(observers=[LoggingObserver(logging.getLogger(LOGGER))])
    failing_call()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["retry.exhausted"]


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"retry.schedueld": "debug"}, "event kind 'retry.schedueld', which does not exist"),
        ({"retry.scheduled": "loud"}, "is not a level name"),
        ({"retry.scheduled": logging.DEBUG}, "is not a level name"),
    ],
)
def test_bad_levels_fail_at_construction(levels: dict[str, object], message: str) -> None:
    """An unknown kind or level name in levels= raises ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        LoggingObserver(levels=levels)  # type: ignore[arg-type]  # wrong on purpose


def test_every_event_severity_is_a_log_level(
    log: pytest.LogCaptureFixture, sample_event: Callable[..., Event]
) -> None:
    """Every event class has a severity the observer maps to a standard level."""
    observer = LoggingObserver(logging.getLogger(LOGGER))
    for cls in all_event_types():
        observer(sample_event(cls))
    assert [r.levelname.lower() for r in log.records] == [cls.severity for cls in all_event_types()]


def test_future_event_classes_need_no_change(
    log: pytest.LogCaptureFixture, future_event: Event
) -> None:
    """An event class the observer has never seen logs at its severity with all its fields."""
    LoggingObserver(logging.getLogger(LOGGER))(future_event)
    assert [(r.levelno, r.getMessage()) for r in log.records] == [
        (
            logging.ERROR,
            "test.refreshed policy=cache.profile took=0.75 waited=none outcome=ok generation=7",
        )
    ]
