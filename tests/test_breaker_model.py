"""A real breaker and the reference model, driven by the same steps, never disagree.

The same steps drive a breaker of this process, and a shared one kept on a MemoryBackend and
on a real Redis server. For Redis the store's clock is the test's fake clock (FakeTimeRedis):
Redis keeps the state and makes every compare-and-set, but time moves when the test says.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from datetime import timedelta
from typing import Any

import attrs
import pytest
from breaker_model import Model, ModelPermit, Outcome
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import resilient
from resilient import Breaker, BreakerPolicy
from resilient._config import DEFAULTS
from resilient.backends import MemoryBackend, Versioned
from resilient.backends.redis import RedisBackend
from resilient.exceptions import CircuitOpenError
from resilient.testing import FakeClock

SLOW_AFTER = 1.0
# how a call ends: (what it raises, or None), whether it counts as failed, whether it counts
ENDINGS = {
    "success": (None, False, True),
    "failure": (ConnectionError, True, True),
    "other_error": (ValueError, False, True),  # not in on=: the dependency answered
    "excluded": (KeyError, False, False),
    "cancelled": (asyncio.CancelledError, False, False),
    "interrupted": (KeyboardInterrupt, False, False),
}
DURATIONS = st.sampled_from([0.0, 0.5, SLOW_AFTER, 2.0])
# failures and successes drawn more often, so that trips and probes come within a few steps
ENDING_NAMES = st.sampled_from(["failure"] * 3 + ["success"] * 2 + sorted(ENDINGS))


@st.composite
def policies(draw: st.DrawFn) -> BreakerPolicy:
    """Draw a breaker policy small enough that its thresholds are reached in a few steps."""
    window: int | timedelta
    if draw(st.booleans()):
        window = draw(st.integers(1, 8))
        minimum = draw(st.integers(1, window))
    else:
        window = timedelta(seconds=draw(st.sampled_from([1.0, 2.5, 10.0])))
        minimum = draw(st.integers(1, 6))
    failure_rate = draw(st.sampled_from([None, 0.25, 0.5, 1.0]))
    consecutive = draw(st.sampled_from([None, 2, 3]))
    slow_after = draw(st.sampled_from([None, SLOW_AFTER]))
    if failure_rate is None and consecutive is None and slow_after is None:
        failure_rate = 0.5
    slow_rate = draw(st.sampled_from([None, 0.5])) if slow_after is not None else None
    open_for = draw(st.sampled_from([1.0, 2.5]))
    return BreakerPolicy(
        failure_rate=failure_rate,
        window=window,
        minimum_calls=minimum,
        consecutive_failures=consecutive,
        slow_call_after=slow_after,
        slow_call_rate=slow_rate,
        on=ConnectionError,
        exclude=KeyError,
        open_for=open_for,
        max_open_for=draw(st.sampled_from([None, 4 * open_for])),
        half_open_calls=draw(st.integers(1, 3)),
        probe_timeout=draw(st.sampled_from([None, 1.0, 2.5])),
    )


class Block:
    """A ``with breaker:`` block left open across steps, in a context of its own."""

    def __init__(self, context: contextvars.Context, permit: ModelPermit, start: float) -> None:
        self.context = context
        self.permit = permit
        self.start = start


_names = itertools.count()


class BreakerMachine(RuleBasedStateMachine):
    """Steps: calls through a decorated function, open blocks, time, and the manual controls."""

    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(monotonic=1000.0)
        resilient.configure(clock=self.clock)

    def new_breaker(self, policy: BreakerPolicy) -> Breaker:
        """Return a new breaker with *policy*: one of this process alone."""
        return resilient.breaker(f"model-{next(_names)}", policy)

    @initialize(policy=policies())
    def make(self, policy: BreakerPolicy) -> None:
        """Make a fresh breaker and its model."""
        self.breaker: Breaker = self.new_breaker(policy)
        self.model = Model(policy)
        clock = self.clock

        @self.breaker
        def call(error: type[BaseException] | None, duration: float) -> str:
            clock.advance(duration)
            if error is not None:
                raise error("from the dependency")
            return "answer"

        self.call = call

    def now(self) -> float:
        return self.clock.monotonic()

    @rule(ending=ENDING_NAMES, duration=DURATIONS)
    def decorated_call(self, ending: str, duration: float) -> None:
        """A call through the decorated function ends as drawn, or is refused."""
        error, failed, counted = ENDINGS[ending]
        decision = self.model.admit(self.now())
        try:
            result: object = self.call(error, duration)
        except BaseException as raised:
            result = raised
        if isinstance(result, CircuitOpenError):
            assert isinstance(decision, float), f"refused, but the model admits: {decision}"
            expected = None if decision == float("inf") else decision
            assert result.remaining == pytest.approx(expected)
            return
        assert type(result) is (str if error is None else error)
        assert isinstance(decision, ModelPermit), f"admitted, but the model refuses: {decision}"
        self.model.record(decision, self.outcome(failed, counted, duration))

    def outcome(self, failed: bool, counted: bool, duration: float) -> Outcome:
        return Outcome(self.now(), failed, slow=duration >= SLOW_AFTER, counted=counted)

    @rule(target=blocks)
    def enter_block(self) -> Any:
        """A ``with`` block is entered and left open, or refused."""
        decision = self.model.admit(self.now())
        context = contextvars.copy_context()
        try:
            context.run(self.breaker.__enter__)
        except CircuitOpenError:
            assert isinstance(decision, float), f"refused, but the model admits: {decision}"
            return multiple()  # no block to leave
        assert isinstance(decision, ModelPermit), f"admitted, but the model refuses: {decision}"
        return Block(context, decision, self.now())

    @rule(block=consumes(blocks), ending=ENDING_NAMES, duration=DURATIONS)
    def leave_block(self, block: Block, ending: str, duration: float) -> None:
        """An open block ends as drawn, after *duration* seconds."""
        error, failed, counted = ENDINGS[ending]
        self.clock.advance(duration)
        exc = None if error is None else error("from the dependency")
        block.context.run(self.breaker.__exit__, None if exc is None else type(exc), exc, None)
        # the block's duration is measured from its entry, which may be several steps back
        slow = self.now() - block.start >= SLOW_AFTER
        self.model.record(block.permit, Outcome(self.now(), failed, slow, counted))

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5, 5.0]))
    def time_passes(self, seconds: float) -> None:
        """The clock moves on."""
        self.clock.advance(seconds)

    @rule()
    def force_open(self) -> None:
        """Someone forces the breaker open."""
        self.breaker.open()
        self.model.force_open(self.now())

    @rule()
    def disable(self) -> None:
        """Someone disables the breaker."""
        self.breaker.disable()
        self.model.disable(self.now())

    @rule()
    def close(self) -> None:
        """Someone closes the breaker."""
        self.breaker.close()
        self.model.close(self.now())

    @rule()
    def reset(self) -> None:
        """Someone resets the breaker."""
        self.breaker.reset()
        self.model.reset(self.now())

    @invariant()
    def agrees(self) -> None:
        """The breaker's stats are the model's."""
        if not hasattr(self, "model"):
            return
        now = self.now()
        stats = self.breaker.stats()
        self.model.tick(now)
        calls, failures, slow = self.model.counts(now)
        assert stats.state.value == self.model.state
        assert (stats.calls, stats.failures, stats.slow_calls) == (calls, failures, slow)
        assert stats.consecutive_failures == self.model.consecutive
        assert stats.rejected == self.model.rejected
        assert stats.trips == self.model.trips
        assert stats.until_half_open == pytest.approx(self.model.until_half_open(now))


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
TestLocalBreakerAgainstModel = BreakerMachine.TestCase


class SharedMemoryMachine(BreakerMachine):
    """The same steps on a breaker shared through a MemoryBackend."""

    def new_breaker(self, policy: BreakerPolicy) -> Breaker:
        return resilient.breaker(
            f"model-{next(_names)}",
            attrs.evolve(policy, shared=True, backend=MemoryBackend(), sync_interval=0.5),
        )


SharedMemoryMachine.TestCase.settings = BreakerMachine.TestCase.settings
TestSharedMemoryBreakerAgainstModel = SharedMemoryMachine.TestCase


class FakeTimeRedis(RedisBackend):
    """A real Redis for the state and its compare-and-set; the configured clock for its time."""

    def get_versioned(self, key: str) -> Versioned:
        return _faked(super().get_versioned(key))

    def set_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        written = super().set_versioned(key, value, version=version, ttl=ttl, writer=writer)
        return _faked(written)

    async def aget_versioned(self, key: str) -> Versioned:
        return _faked(await super().aget_versioned(key))

    async def aset_versioned(
        self, key: str, value: object, *, version: int, ttl: float, writer: str
    ) -> Versioned:
        written = await super().aset_versioned(key, value, version=version, ttl=ttl, writer=writer)
        return _faked(written)


def _faked(versioned: Versioned) -> Versioned:
    return versioned._replace(time=DEFAULTS.clock.monotonic())


def test_a_breaker_shared_on_redis_agrees_with_the_model(redis_url: str) -> None:
    """Driven through a real Redis, the shared breaker never disagrees with the model."""
    backend = FakeTimeRedis.from_url(redis_url)

    class SharedRedisMachine(BreakerMachine):
        def new_breaker(self, policy: BreakerPolicy) -> Breaker:
            return resilient.breaker(
                f"model-{next(_names)}",
                attrs.evolve(policy, shared=True, backend=backend, sync_interval=0.5),
            )

    try:
        run_state_machine_as_test(
            SharedRedisMachine,
            settings=settings(
                BreakerMachine.TestCase.settings, max_examples=150, stateful_step_count=30
            ),
        )
    finally:
        backend.close()
