"""An opt-in pytest plugin: fixtures only, no hooks.

Enable it in a ``conftest.py`` with ``pytest_plugins = ["resilient.testing.pytest_plugin"]``.
Every test then starts from the library's defaults (anything a test configured is reset
after it, and every circuit breaker is reset to closed), and can ask for these fixtures:

- ``fake_clock``: a :class:`~resilient.testing.FakeClock` installed as the clock;
- ``captured_events``: the list of events reported during the test;
- ``resilient_testing``: testing mode on (no sleeps, one attempt) for the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._config import configure, reset_defaults
from ..events import Event
from . import FakeClock, capture_events, reset_breakers, set_testing

__all__ = ["captured_events", "fake_clock", "resilient_testing"]


@pytest.fixture(autouse=True)
def _resilient_reset_defaults() -> Iterator[None]:
    yield
    reset_defaults()
    reset_breakers()


@pytest.fixture
def fake_clock() -> FakeClock:
    """Install and return a fresh FakeClock for the test."""
    clock = FakeClock()
    configure(clock=clock)
    return clock


@pytest.fixture
def captured_events() -> Iterator[list[Event]]:
    """Return the list of events reported while the test runs."""
    with capture_events() as events:
        yield events


@pytest.fixture
def resilient_testing() -> Iterator[None]:
    """Run the test in testing mode: no real sleeps, one attempt."""
    with set_testing(True):
        yield
