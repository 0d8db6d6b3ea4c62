"""A shared breaker, several processes' views of it played by Breaker objects in one process.

Each `Breaker` made directly (not through `breaker()`, whose registry gives one object per
name) holds a view of its own, exactly as one process does; they share the state a
MemoryBackend keeps, on the fake clock. The same behaviour on Redis, with real processes, is
in tests/integration/test_breaker_redis.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
from cache_support import EventLog

from resilient import Breaker, BreakerPolicy, BreakerState
from resilient.backends import MemoryBackend, Versioned
from resilient.events import BackendFailed, BreakerClosed, BreakerOpened
from resilient.exceptions import CircuitOpenError
from resilient.testing import FakeClock

_names = itertools.count()


class Flaky(MemoryBackend):
    """A MemoryBackend whose versioned primitives fail while ``down`` is set (unit tests only)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def get_versioned(self, key: str) -> Versioned:
        if self.down:
            raise ConnectionError("the store is down")
        return super().get_versioned(key)

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        if self.down:
            raise ConnectionError("the store is down")
        return super().set_versioned(key, value, version=version, ttl=ttl, writer=writer)


class Fleet:
    """Views ("processes") of one shared breaker, and calls through each of them."""

    def __init__(self, backend: MemoryBackend, **options: Any) -> None:
        self.name = f"shared-{next(_names)}"
        self.backend = backend
        self.policy = BreakerPolicy(shared=True, backend=backend, **options)

    def process(self) -> Breaker:
        """Return a new view of the breaker, as a new process would have."""
        return Breaker(self.name, self.policy)

    @staticmethod
    def call(view: Breaker, *, ok: bool) -> str:
        """Call through *view*: "ok", "failed" or "refused"."""
        try:
            with view:
                if not ok:
                    raise ConnectionError
        except ConnectionError:
            return "failed"
        except CircuitOpenError:
            return "refused"
        return "ok"

    def stored(self) -> dict[str, Any]:
        """Return the state the backend keeps."""
        link = self.process()._link
        assert link is not None
        value = self.backend.get_versioned(link.key()).value
        assert isinstance(value, dict)
        return value


@pytest.fixture
def fleet(clock: FakeClock) -> Fleet:
    """A shared breaker on a MemoryBackend: 50% of at least 4 calls trips it for 10 s."""
    return Fleet(MemoryBackend(), failure_rate=0.5, minimum_calls=4, window=10, open_for=10)


def test_outcomes_from_every_process_add_up_and_trip_it_once(
    fleet: Fleet, clock: FakeClock, log: EventLog
) -> None:
    """Two processes' calls count in one window: their failures together trip it, once."""
    first, second = fleet.process(), fleet.process()
    for view in (first, second):
        assert [fleet.call(view, ok=ok) for ok in (True, False)] == ["ok", "failed"]
    clock.advance(0.25)  # each view is now old enough to send what it counted
    first.stats()
    assert first.state is BreakerState.CLOSED  # 1 of 2 counted so far: below minimum_calls
    second.stats()
    stored = fleet.stored()
    assert (stored["state"], stored["window"][-3:]) == ("open", [4, 2, 0])
    assert len(log.of(BreakerOpened)) == 1


def test_a_process_sees_a_trip_elsewhere_within_sync_interval(
    fleet: Fleet, clock: FakeClock
) -> None:
    """A view admits calls on what it last knew until it is sync_interval old, then refuses."""
    tripping, other = fleet.process(), fleet.process()
    assert fleet.call(other, ok=True) == "ok"  # other has a fresh view: closed
    for _ in range(4):
        fleet.call(tripping, ok=False)
    assert tripping.state is BreakerState.OPEN
    clock.advance(0.2)
    assert fleet.call(other, ok=True) == "ok"  # 0.2 s old: still its closed view
    clock.advance(0.05)
    assert fleet.call(other, ok=True) == "refused"


def test_probes_are_admitted_once_across_every_process(fleet: Fleet, clock: FakeClock) -> None:
    """At the end of the open time, one probe in the whole fleet; the others are refused."""
    views = [fleet.process() for _ in range(3)]
    for _ in range(4):
        fleet.call(views[0], ok=False)
    clock.advance(10)
    entered = []
    refusals = []
    for view in views:
        try:
            view.__enter__()
            entered.append(view)
        except CircuitOpenError as refused:
            refusals.append(refused.state)
    assert len(entered) == 1
    assert refusals == [BreakerState.HALF_OPEN] * 2
    entered[0].__exit__(None, None, None)  # the probe succeeds: closed for everyone
    clock.advance(0.25)
    assert [view.state for view in views] == [BreakerState.CLOSED] * 3


def test_probes_still_out_from_a_failed_period_hold_their_places(clock: FakeClock) -> None:
    """Three probes out, one fails: the next half-open period admits one, not three more."""
    fleet = Fleet(
        MemoryBackend(), failure_rate=None, consecutive_failures=1, open_for=1, half_open_calls=3
    )
    views = [fleet.process() for _ in range(7)]
    fleet.call(views[0], ok=False)
    clock.advance(1)

    def enter(view: Breaker) -> bool:
        try:
            view.__enter__()
        except CircuitOpenError:
            return False
        return True

    assert [enter(view) for view in views[1:5]] == [True, True, True, False]
    views[1].__exit__(ConnectionError, ConnectionError(), None)  # one probe fails: open again
    clock.advance(1)
    assert [enter(view) for view in views[5:7] + views[4:5]] == [True, False, False]
    for view in (views[2], views[3], views[5]):
        view.__exit__(None, None, None)


def test_a_new_process_finds_the_state_and_never_resets_it(fleet: Fleet, clock: FakeClock) -> None:
    """Views made and dropped while it is open all see it open with the same time left."""
    tripping = fleet.process()
    for _ in range(4):
        fleet.call(tripping, ok=False)
    clock.advance(4)
    for _ in range(100):
        view = fleet.process()
        assert (view.state, view.stats().until_half_open) == (BreakerState.OPEN, 6.0)
    assert fleet.stored()["state"] == "open"


def test_controls_act_on_the_stored_state(fleet: Fleet, clock: FakeClock, log: EventLog) -> None:
    """open() in one process refuses calls in another; close() there ends it everywhere."""
    first, second = fleet.process(), fleet.process()
    first.open()
    assert fleet.stored()["state"] == "forced_open"
    assert fleet.call(second, ok=True) == "refused"
    second.close()
    clock.advance(0.25)
    assert fleet.call(first, ok=True) == "ok"
    assert [type(e) for e in log.events if not isinstance(e, BackendFailed)][-1] is BreakerClosed


def test_a_control_that_changes_nothing_in_an_old_view_still_reaches_the_store(
    fleet: Fleet, clock: FakeClock
) -> None:
    """disable() where the view is disabled already, but the store was closed since: disabled."""
    first, second = fleet.process(), fleet.process()
    first.disable()
    second.close()
    clock.advance(5)
    first.disable()
    assert fleet.stored()["state"] == "disabled"
    assert second.state is BreakerState.DISABLED


def test_the_store_clock_is_never_read_from_an_old_answer(
    fleet: Fleet, clock: FakeClock, log: EventLog
) -> None:
    """A control that changes nothing keeps the view's clock: the next transition is on time."""
    view = fleet.process()
    view.disable()
    clock.advance(5)
    view.disable()
    view.open()
    assert [event.time for event in log.of(BreakerOpened)] == [5.0]


def test_a_corrupt_stored_state_is_replaced_not_raised(fleet: Fleet, clock: FakeClock) -> None:
    """A stored value that is not a breaker's state is overwritten with a working one."""
    view = fleet.process()
    fleet.call(view, ok=True)
    key = view._link.key()  # type: ignore[union-attr]
    version = fleet.backend.get_versioned(key).version
    fleet.backend.set_versioned(key, {"state": "ajar"}, version=version, ttl=60, writer="x")
    clock.advance(0.25)
    assert view.state is BreakerState.CLOSED  # a read alone finds it corrupt, and mends it
    assert fleet.stored()["state"] == "closed"
    assert fleet.call(fleet.process(), ok=True) == "ok"


def test_a_failing_backend_leaves_each_process_protecting_alone(
    clock: FakeClock, log: EventLog
) -> None:
    """With the store down: no error reaches a call, one event, the breaker trips locally.

    When the store is back, what it holds wins again: what the process counted alone is not
    merged into it.
    """
    flaky = Flaky()
    fleet = Fleet(flaky, failure_rate=None, consecutive_failures=2, open_for=10)
    view = fleet.process()
    assert fleet.call(view, ok=True) == "ok"
    flaky.down = True
    clock.advance(0.25)
    results = [fleet.call(view, ok=False) for _ in range(4)]
    assert results == ["failed", "failed", "refused", "refused"]
    failed = log.of(BackendFailed)
    assert [(e.operation, e.error_type) for e in failed] == [("breaker", "ConnectionError")]
    assert len(log.of(BreakerOpened)) == 1  # reported by the process, deciding alone
    clock.advance(0.5)
    assert fleet.call(view, ok=True) == "refused"  # the cool-down: still alone, still open
    flaky.down = False
    clock.advance(0.5)  # the cool-down is over: the next look tries the store again
    assert fleet.call(view, ok=True) == "ok"
    assert fleet.stored()["state"] == "closed"
    assert len(log.of(BackendFailed)) == 1


def test_a_store_that_lost_the_state_gets_the_process_view_back(
    fleet: Fleet, clock: FakeClock
) -> None:
    """After the backend forgot the state (a restart), a process that knew it stores it again."""
    view = fleet.process()
    for _ in range(4):
        fleet.call(view, ok=False)
    fleet.backend._versioned.clear()
    clock.advance(0.25)
    assert view.state is BreakerState.OPEN
    assert fleet.stored()["state"] == "open"


def test_shared_settings_are_checked() -> None:
    """backend= needs shared=True; a backend lacking compare-and-set is refused."""
    with pytest.raises(ValueError, match="add shared=True"):
        BreakerPolicy(backend=MemoryBackend())
    with pytest.raises(TypeError, match="lacks get_versioned, set_versioned"):
        BreakerPolicy(shared=True, backend=object())
    with pytest.raises(ValueError, match="sync_interval=0 must be more than zero"):
        BreakerPolicy(shared=True, sync_interval=0)
    assert attrs.evolve(BreakerPolicy(), shared=True).backend is None
