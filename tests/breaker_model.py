"""A reference model of the circuit breaker: the rules of docs/breaker.md, written plainly.

It keeps every outcome of the closed period in a list and recomputes the window from it each
time, where the library keeps O(1) windows and counts quick successes lazily. The stateful
tests drive a real breaker and this model with the same steps and compare what each says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from resilient import BreakerPolicy
from resilient._core.window import BUCKETS

__all__ = ["Model", "Outcome", "ModelPermit"]


class Outcome(NamedTuple):
    """One finished call: when it finished, whether it failed, was slow, or counts at all."""

    time: float
    failed: bool
    slow: bool
    counted: bool = True


class ModelPermit(NamedTuple):
    """How the model admitted a call: "closed", "probe" (with its number) or "uncounted"."""

    kind: str
    epoch: int
    number: int = 0


@dataclass
class Model:
    """The breaker's state as the documented rules say it should be."""

    policy: BreakerPolicy
    state: str = "closed"
    epoch: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    consecutive: int = 0
    trips: int = 0
    open_until: float = 0.0
    opened_for: float = 0.0
    half_open_since: float = 0.0
    probes: int = 0
    passed: int = 0
    rejected: int = 0
    # probes not yet reported, of any period: number -> (epoch, admitted at)
    in_flight: dict[int, tuple[int, float]] = field(default_factory=dict)
    numbers: int = 0

    def window(self, now: float) -> list[Outcome]:
        """Return the outcomes in the sliding window at *now*."""
        size = self.policy.window
        if isinstance(size, int):
            return self.outcomes[-size:] if self.outcomes else []
        width = size.total_seconds() / BUCKETS
        current = math.floor(now / width)
        return [o for o in self.outcomes if math.floor(o.time / width) > current - BUCKETS]

    def counts(self, now: float) -> tuple[int, int, int]:
        """Return (calls, failures, slow calls) in the window at *now*."""
        window = self.window(now)
        slow = sum(o.slow for o in window) if self.policy.slow_call_after is not None else 0
        return len(window), sum(o.failed for o in window), slow

    def tick(self, now: float) -> None:
        """Apply what time alone does: lost probes given up, open to half-open."""
        timeout = self.policy.probe_timeout
        lost = [
            n
            for n, (_, at) in self.in_flight.items()
            if timeout is not None and now - at >= timeout
        ]
        lost_epochs = {self.in_flight.pop(number)[0] for number in lost}
        if self.state == "half_open" and self.epoch in lost_epochs:
            self._enter("open", now)
        elif self.state == "open" and now >= self.open_until:
            self._enter("half_open", now)

    def admit(self, now: float) -> ModelPermit | float:
        """Return a permit for a call at *now*, or the remaining seconds it is told."""
        self.tick(now)
        if self.state == "closed":
            return ModelPermit("closed", self.epoch)
        if self.state == "disabled":
            return ModelPermit("uncounted", -1)
        limit = self.policy.half_open_calls
        if self.state == "half_open" and self.probes < limit and len(self.in_flight) < limit:
            self.probes += 1
            self.numbers += 1
            self.in_flight[self.numbers] = (self.epoch, now)
            return ModelPermit("probe", self.epoch, self.numbers)
        self.rejected += 1
        if self.state == "open":
            return max(0.0, self.open_until - now)
        return math.inf if self.state == "forced_open" else 0.0

    def record(self, permit: ModelPermit, outcome: Outcome) -> None:
        """Count how a call admitted with *permit* ended."""
        if permit.kind == "probe" and self.in_flight.pop(permit.number, None) is None:
            return  # given up as lost
        if permit.epoch != self.epoch:
            return
        now = outcome.time
        slow = outcome.slow and self.policy.slow_call_after is not None
        if permit.kind == "probe":
            if not outcome.counted:
                self.probes -= 1
            elif outcome.failed or slow:
                self._enter("open", now)
            else:
                self.passed += 1
                if self.passed >= self.policy.half_open_calls:
                    self._enter("closed", now)
            return
        if not outcome.counted:
            return
        self.outcomes.append(outcome._replace(slow=slow))
        if outcome.failed:
            self.consecutive += 1
        else:
            self.consecutive = 0
        if not (outcome.failed or slow):
            return
        if self._trips(now):
            self._enter("open", now)

    def _trips(self, now: float) -> bool:
        policy = self.policy
        limit = policy.consecutive_failures
        if limit is not None and self.consecutive >= limit:
            return True
        calls, failures, slow_calls = self.counts(now)
        if calls < policy.minimum_calls:
            return False
        rate, slow_rate = policy.failure_rate, policy.slow_threshold
        return (rate is not None and failures / calls >= rate) or (
            slow_rate is not None and slow_calls / calls >= slow_rate
        )

    def force_open(self, now: float) -> None:
        """Open by hand."""
        if self.state != "forced_open":
            self._enter("forced_open", now)

    def disable(self, now: float) -> None:
        """Disable by hand."""
        if self.state != "disabled":
            self._enter("disabled", now)

    def close(self, now: float) -> None:
        """Close by hand."""
        self._enter("closed", now)

    def reset(self, now: float) -> None:
        """Close by hand and forget the rejections."""
        self.rejected = 0
        self._enter("closed", now)

    def until_half_open(self, now: float) -> float | None:
        """Return the seconds until half-open, while open."""
        return max(0.0, self.open_until - now) if self.state == "open" else None

    def _enter(self, state: str, now: float) -> None:
        self.state = state
        self.epoch += 1
        if state == "open":
            self.trips += 1
            policy = self.policy
            grown = policy.open_for * 2.0 ** (self.trips - 1)
            self.opened_for = (
                policy.open_for if policy.max_open_for is None else min(grown, policy.max_open_for)
            )
            self.open_until = now + self.opened_for
        elif state == "half_open":
            self.probes = self.passed = 0
            self.half_open_since = now
        elif state == "closed":
            self.outcomes.clear()
            self.consecutive = 0
            self.trips = 0
