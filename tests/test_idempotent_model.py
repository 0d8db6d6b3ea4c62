"""A hypothesis model of `@idempotent`: any sequence of calls and clock moves behaves like a dict.

The model keeps, per key, the first stored outcome, its payload and when it expires. Calls with
keys, payloads and outcomes drawn at random, and time moved past or short of the retention,
must agree with it on what runs, what is replayed, what conflicts and what is raised.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resilient
from resilient import idempotent
from resilient.backends import MemoryBackend
from resilient.exceptions import IdempotencyConflictError, IdempotentFailureError
from resilient.testing import FakeClock

TTL = 100.0


class Declined(Exception):
    """An outcome worth storing."""


class IdempotencyMachine(RuleBasedStateMachine):
    """Calls of one idempotent function against a model of its records."""

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        resilient.configure(clock=self.clock)
        self.executions = 0
        self.expected_executions = 0
        # key -> (payload, ok, value or error text, expires at)
        self.model: dict[str, tuple[int, bool, str, float]] = {}

        @idempotent(
            key="key",
            payload=["payload"],
            ttl=TTL,
            store_errors=(Declined,),
            backend=MemoryBackend(),
        )
        def call(key: str, payload: int, behaviour: str) -> str:
            self.executions += 1
            if behaviour == "transient":
                raise ConnectionError("try again")
            if behaviour == "declined":
                raise Declined(f"declined {self.executions}")
            return f"value {self.executions}"

        self.call = call

    @rule(
        key=st.sampled_from(["a", "b", "c"]),
        payload=st.integers(0, 2),
        behaviour=st.sampled_from(["ok", "transient", "declined"]),
    )
    def make_a_call(self, key: str, payload: int, behaviour: str) -> None:
        stored = self.model.get(key)
        if stored is not None and stored[3] <= self.clock.monotonic():
            del self.model[key]
            stored = None
        outcome = self._outcome(key, payload, behaviour)
        if stored is None:
            self.expected_executions += 1
            if behaviour == "ok":
                assert outcome == f"value {self.executions}"
                self.model[key] = (payload, True, outcome, self.clock.monotonic() + TTL)
            elif behaviour == "declined":
                assert isinstance(outcome, Declined)
                text = str(outcome)
                self.model[key] = (payload, False, text, self.clock.monotonic() + TTL)
            else:
                assert isinstance(outcome, ConnectionError)
            return
        first_payload, ok, kept, _ = stored
        if payload != first_payload:
            assert isinstance(outcome, IdempotencyConflictError)
        elif ok:
            assert outcome == kept
        else:
            assert isinstance(outcome, IdempotentFailureError)
            assert outcome.detail == kept

    @rule(seconds=st.sampled_from([1.0, TTL / 2, TTL, TTL * 2]))
    def let_time_pass(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def runs_only_what_the_model_runs(self) -> None:
        assert self.executions == self.expected_executions

    def _outcome(self, key: str, payload: int, behaviour: str) -> Any:
        try:
            return self.call(key, payload, behaviour)
        except Exception as error:
            return error


IdempotencyMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30)


class TestIdempotencyModel(IdempotencyMachine.TestCase):
    """Runs the model (the plugin's autouse fixture resets the clock after it)."""
