"""A failing observer never breaks the call: it is logged once, or raised in testing mode."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import resilient
from resilient.events import Event
from resilient.observers import StatsObserver, StructlogObserver
from resilient.testing import set_testing


def broken_observer(event: Event) -> None:
    """An observer with a bug: it fails on every event."""
    raise KeyError(event.kind)


def test_failing_observer_is_logged_once_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """The call still fails with its own error, later observers still see every event, one log."""
    stats = StatsObserver()
    resilient.configure(observers=[broken_observer, stats])
    with caplog.at_level(logging.ERROR, logger="resilient"):
        failing_call()
        failing_call()
    assert stats.count("retry.scheduled") == 4
    assert stats.count("retry.exhausted") == 2
    [record] = caplog.records
    assert record.name == "resilient"
    assert record.levelno == logging.ERROR
    assert "broken_observer" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


def test_misconfigured_builtin_observer_does_not_break_the_call(
    caplog: pytest.LogCaptureFixture, failing_call: Callable[..., None]
) -> None:
    """A StructlogObserver given a stdlib logger (which rejects key/values) is logged once."""
    observer = StructlogObserver(logging.getLogger("tests.observers.not-structlog"))
    resilient.configure(observers=[observer])
    with caplog.at_level(logging.ERROR, logger="resilient"):
        failing_call()
    [record] = caplog.records
    assert "StructlogObserver(logger=<Logger tests.observers.not-structlog" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is TypeError


def test_testing_mode_raises_the_observer_error() -> None:
    """Under set_testing(True), the observer's exception propagates out of the call."""
    resilient.configure(observers=[broken_observer])

    @resilient.retry(on=ConnectionError, attempts=3, wait=resilient.wait.none())
    def fetch() -> None:
        raise ConnectionError("down")

    with set_testing(True, attempts=3), pytest.raises(KeyError, match=r"retry\.scheduled"):
        fetch()
