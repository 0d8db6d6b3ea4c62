"""The opt-in pytest plugin, resilient.testing.pytest_plugin, run inside pytest's own pytester.

Each test writes a small test file, runs pytest on it in-process with the plugin enabled by
``-p`` (exactly as a user's ``pytest_plugins`` line would), and checks the outcomes.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "resilient.testing.pytest_plugin"


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep installed plugins (hypothesis, ...) out of the inner runs: hermetic and fast."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    """Write *source* as a test module and run pytest on it with the plugin enabled."""
    pytester.makepyfile(source)
    return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider")


def test_fake_clock_fixture_installs_a_fake_clock(pytester: pytest.Pytester) -> None:
    """fake_clock is a FakeClock installed as the clock: retries sleep on it."""
    result = run(
        pytester,
        """
        from resilient import retry, wait
        from resilient.testing import FakeClock

        def test_sleeps_go_to_the_fake_clock(fake_clock):
            assert isinstance(fake_clock, FakeClock)
            calls = []

            @retry(on=ConnectionError, attempts=3, wait=wait.constant(30))
            def flaky():
                calls.append(1)
                if len(calls) < 3:
                    raise ConnectionError
                return "ok"

            assert flaky() == "ok"
            assert fake_clock.sleeps == [30.0, 30.0]
            assert fake_clock.monotonic() == 60.0
        """,
    )
    result.assert_outcomes(passed=1)


def test_captured_events_fixture_collects_the_test_events(pytester: pytest.Pytester) -> None:
    """captured_events is the list of events reported during the test."""
    result = run(
        pytester,
        """
        from resilient import retry, wait
        from resilient.events import RetriesExhausted, RetryScheduled

        def test_events_are_captured(captured_events):
            assert captured_events == []

            @retry(on=ConnectionError, attempts=2, wait=wait.none(), name="pay")
            def down():
                raise ConnectionError

            try:
                down()
            except ConnectionError:
                pass
            assert [type(event) for event in captured_events] == [
                RetryScheduled,
                RetriesExhausted,
            ]
            assert {event.policy for event in captured_events} == {"pay"}
        """,
    )
    result.assert_outcomes(passed=1)


def test_resilient_testing_fixture_turns_on_testing_mode(pytester: pytest.Pytester) -> None:
    """resilient_testing makes one attempt and never sleeps, even with long waits."""
    result = run(
        pytester,
        """
        import time

        from resilient import retry, wait

        def test_one_attempt_and_no_sleep(resilient_testing):
            calls = []

            @retry(on=ConnectionError, attempts=5, wait=wait.constant(30))
            def down():
                calls.append(1)
                raise ConnectionError

            started = time.monotonic()
            try:
                down()
            except ConnectionError:
                pass
            assert calls == [1]
            assert time.monotonic() - started < 5
        """,
    )
    result.assert_outcomes(passed=1)


def test_fixtures_work_together(pytester: pytest.Pytester) -> None:
    """All three fixtures can be used in one test: testing mode, a fake clock, captured events."""
    result = run(
        pytester,
        """
        from resilient import retry, wait

        def test_all(fake_clock, captured_events, resilient_testing):
            @retry(on=ConnectionError, attempts=3, wait=wait.constant(1))
            def down():
                raise ConnectionError

            try:
                down()
            except ConnectionError:
                pass
            assert fake_clock.sleeps == []
            assert [event.kind for event in captured_events] == ["retry.exhausted"]
        """,
    )
    result.assert_outcomes(passed=1)


def test_defaults_set_in_one_test_are_reset_before_the_next(pytester: pytest.Pytester) -> None:
    """Clock, observers and testing mode configured in a test do not leak into the next one."""
    result = run(
        pytester,
        """
        from resilient import configure, retry, wait
        from resilient.testing import FakeClock, set_testing

        leaked_clock = FakeClock()
        leaked_events = []

        def attempts_and_events():
            calls = []

            @retry(on=ConnectionError, attempts=3, wait=wait.none())
            def down():
                calls.append(1)
                raise ConnectionError

            try:
                down()
            except ConnectionError:
                pass
            return len(calls)

        def test_1_configures_everything(fake_clock):
            configure(clock=leaked_clock, observers=[leaked_events.append])
            set_testing(True, attempts=1)
            assert attempts_and_events() == 1
            assert len(leaked_events) == 1

        def test_2_starts_from_the_defaults():
            before = len(leaked_events)
            assert attempts_and_events() == 3  # testing mode is off again
            assert len(leaked_events) == before  # the observer is gone

            @retry(on=ConnectionError, attempts=2, wait=wait.constant(0.001))
            def once():
                raise ConnectionError

            try:
                once()
            except ConnectionError:
                pass
            assert leaked_clock.sleeps == []  # the real clock slept, not the leaked one
        """,
    )
    result.assert_outcomes(passed=2)


def test_fixtures_need_the_plugin(pytester: pytest.Pytester) -> None:
    """Without the plugin the fixtures do not exist: the plugin is opt-in."""
    pytester.makepyfile(
        """
        def test_needs_plugin(fake_clock):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_clock' not found*"])


def test_plugin_via_pytest_plugins_in_conftest(pytester: pytest.Pytester) -> None:
    """Enabling the plugin with pytest_plugins in a conftest.py, as documented, works."""
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
    pytester.makepyfile(
        """
        def test_uses_fixture(fake_clock):
            fake_clock.sleep(2)
            assert fake_clock.monotonic() == 2
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
