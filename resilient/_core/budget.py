# Retry budget arithmetic: a sliding window of calls and retries split into time slots.
#
# Rule: a retry is allowed while, over the last `window` seconds, retries + 1 <=
# min_per_second * window + ratio * calls. Calls are recorded in O(1); deciding a retry sums the
# slots (O(slots), on the failure path only). Time arrives as an argument; callers serialise
# access (the public RetryBudget holds a lock around this).
from __future__ import annotations

__all__ = ["BudgetWindow"]


class BudgetWindow:
    """Calls and retries seen in the last *window* seconds, in *slots* buckets."""

    __slots__ = ("_calls", "_epochs", "_reserve", "_retries", "_slot_width", "ratio")

    def __init__(self, ratio: float, min_per_second: float, window: float, slots: int = 10) -> None:
        self.ratio = ratio
        self._reserve = min_per_second * window
        self._slot_width = window / slots
        self._epochs = [-1] * slots
        self._calls = [0] * slots
        self._retries = [0] * slots

    def _slot(self, now: float) -> int:
        epoch = int(now // self._slot_width)
        index = epoch % len(self._epochs)
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._calls[index] = 0
            self._retries[index] = 0
        return index

    def record_call(self, now: float) -> None:
        """Count one call (first attempt) made at *now*."""
        self._calls[self._slot(now)] += 1

    def try_retry(self, now: float) -> bool:
        """Spend one retry at *now* if the budget allows it; return whether it did."""
        index = self._slot(now)
        oldest = self._epochs[index] - len(self._epochs)
        calls = retries = 0
        for epoch, slot_calls, slot_retries in zip(
            self._epochs, self._calls, self._retries, strict=True
        ):
            if epoch > oldest:
                calls += slot_calls
                retries += slot_retries
        if retries + 1 > self._reserve + self.ratio * calls:
            return False
        self._retries[index] += 1
        return True
