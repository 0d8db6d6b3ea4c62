"""Fixtures shared across the suite; the Redis ones come from the redis_fixtures plugin."""

from __future__ import annotations

import pytest
from cache_support import EventLog

import resilient
from resilient.testing import FakeClock

pytest_plugins = ["resilient.testing.pytest_plugin", "redis_fixtures"]


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """A fake clock installed for the test: entries expire only when the test says so."""
    return fake_clock


@pytest.fixture
def log() -> EventLog:
    """An installed observer that records every event."""
    recorder = EventLog()
    resilient.configure(observers=[recorder])
    return recorder
