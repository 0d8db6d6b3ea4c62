"""The command line: ``python -m resilient demo`` (a scripted tour, no network, no Redis)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from . import wait
from ._config import DEFAULTS, configure, reset_defaults
from ._retry import RetryBudget, retry
from .events import Event, RetriesExhausted, RetryScheduled

__all__ = ["main"]


class UpstreamError(ConnectionError):
    """What the simulated upstream raises; may carry a Retry-After hint like an HTTP 503."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Tour:
    """Prints the tour as a table: one row per thing the upstream or the library did."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def section(self, title: str, code: str) -> None:
        self.out.write(f"\n== {title}\n   {code}\n\n   {'time':>7}  {'who':<9}  what\n")
        self.started = time.monotonic()

    def row(self, who: str, what: str) -> None:
        elapsed = (time.monotonic() - self.started) * 1000
        self.out.write(f"   {elapsed:>5.0f}ms  {who:<9}  {what}\n")
        self.out.flush()

    def observe(self, event: Event) -> None:
        """Print what the library decided (installed as an observer)."""
        if isinstance(event, RetryScheduled):
            self.row("resilient", f"retry in {event.delay * 1000:.0f} ms ({event.error_type})")
        elif isinstance(event, RetriesExhausted):
            self.row("resilient", f"give up after {event.attempts} attempts: {event.reason}")


class _Upstream:
    """A scripted dependency: each call consumes the next outcome (an exception or a value)."""

    def __init__(self, tour: _Tour, script: Sequence[object], label: str = "upstream") -> None:
        self.tour = tour
        self.script = list(script)
        self.label = label
        self.calls = 0

    def __call__(self) -> str:
        outcome = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            self.tour.row(self.label, f"attempt {self.calls}: {type(outcome).__name__}: {outcome}")
            raise outcome
        self.tour.row(self.label, f"attempt {self.calls}: {outcome}")
        return str(outcome)


def _outcome(tour: _Tour, call: Callable[[], str]) -> None:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the demo shows whatever happened
        notes = "; ".join(getattr(exc, "__notes__", []))
        tour.row("caller", f"raised {type(exc).__name__}: {exc}" + (f" [{notes}]" if notes else ""))
    else:
        tour.row("caller", f"got {result!r}")


def _transient(tour: _Tour) -> None:
    tour.section(
        "1. A transient fault: two dropped connections, then an answer",
        "@retry(on=ConnectionError, attempts=4, wait=wait.exponential(initial=0.02))",
    )
    upstream = _Upstream(tour, [UpstreamError("connection reset")] * 2 + ["200 OK"])
    policy = retry(on=ConnectionError, attempts=4, wait=wait.exponential(initial=0.02), name="api")
    _outcome(tour, policy(upstream))


def _retry_after(tour: _Tour) -> None:
    tour.section(
        "2. The upstream says 503 with Retry-After: 0.15 s; the backoff alone would wait 10 ms",
        "@retry(on=ConnectionError, wait=wait.constant(0.01))",
    )
    upstream = _Upstream(tour, [UpstreamError("503 busy", retry_after=0.15), "200 OK"])
    _outcome(tour, retry(on=ConnectionError, wait=wait.constant(0.01), name="api")(upstream))


def _exhausted(tour: _Tour) -> None:
    tour.section(
        "3. A dependency that stays down: the original exception comes back, with a note",
        "@retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01))",
    )
    upstream = _Upstream(tour, [UpstreamError("connection refused")])
    policy = retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01), name="api")
    _outcome(tour, policy(upstream))


def _not_retried(tour: _Tour) -> None:
    tour.section(
        "4. A bug is not a transient fault: errors outside on= are raised at once",
        "@retry(on=ConnectionError, attempts=5)",
    )
    upstream = _Upstream(tour, [ValueError("malformed order id")])
    _outcome(tour, retry(on=ConnectionError, attempts=5, name="api")(upstream))


def _deadline(tour: _Tour) -> None:
    tour.section(
        "5. A deadline of 0.1 s: no wait crosses it, no attempt starts after it",
        "@retry(on=ConnectionError, attempts=10, deadline=0.1, wait=wait.constant(0.04))",
    )
    upstream = _Upstream(tour, [UpstreamError("timeout")])
    policy = retry(
        on=ConnectionError, attempts=10, deadline=0.1, wait=wait.constant(0.04), name="api"
    )
    _outcome(tour, policy(upstream))


def _budget(tour: _Tour) -> None:
    tour.section(
        "6. A retry budget stops a retry storm: 40 calls to a dead upstream, 3 attempts each",
        "@retry(on=ConnectionError, attempts=3, wait=wait.none(), "
        "budget=RetryBudget(ratio=0.1, min_per_second=0.5))",
    )
    upstream = _Upstream(tour, [UpstreamError("down")], label="")
    tour.out.write("   (rows for the 40 calls are summarised below)\n")
    decided: list[Event] = []
    configure(observers=[decided.append])
    budget = RetryBudget(ratio=0.1, min_per_second=0.5, window=10)
    policy = retry(on=ConnectionError, attempts=3, wait=wait.none(), budget=budget, name="api")
    call = policy(upstream)
    upstream.tour = _Tour(io.StringIO())
    for _ in range(40):
        with contextlib.suppress(ConnectionError):
            call()
    configure(observers=[tour.observe])
    retried = sum(isinstance(event, RetryScheduled) for event in decided)
    refused = sum(getattr(event, "reason", None) == "budget" for event in decided)
    tour.row("upstream", f"{upstream.calls} attempts in all (80 retries without a budget)")
    tour.row(
        "resilient", f"{retried} retries allowed; {refused} calls gave up as the budget ran out"
    )


async def _concurrent(tour: _Tour) -> None:
    tour.section(
        "7. Async: five concurrent calls through one decorated coroutine, each with its own count",
        "@retry(on=ConnectionError, attempts=4, wait=wait.constant(0.01)) async def fetch(n)",
    )
    attempts: dict[int, int] = {}

    @retry(on=ConnectionError, attempts=4, wait=wait.constant(0.01))
    async def fetch(n: int) -> str:
        attempts[n] = attempts.get(n, 0) + 1
        await asyncio.sleep(0)
        if attempts[n] <= n % 4:
            raise UpstreamError(f"call {n} dropped")
        return f"call {n} ok"

    results = await asyncio.gather(*(fetch(n) for n in range(5)), return_exceptions=True)
    for n, result in enumerate(results):
        tour.row("caller", f"{result!s} after {attempts[n]} attempts")


def demo(out: TextIO) -> None:
    """Run the scripted tour, printing every decision as it is made."""
    tour = _Tour(out)
    out.write(
        "resilient demo: a scripted tour against a simulated flaky upstream "
        "(embedded defaults: no network, no Redis)\n"
    )
    saved = DEFAULTS.observers
    configure(observers=[tour.observe])
    try:
        _transient(tour)
        _retry_after(tour)
        _exhausted(tour)
        _not_retried(tour)
        _deadline(tour)
        _budget(tour)
        asyncio.run(_concurrent(tour))
    finally:
        reset_defaults()
        configure(observers=saved)
    out.write("\nEvery decision above was reported to an observer; see docs/observability.md.\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m resilient", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="a scripted tour of what the library decides")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(sys.stdout)
    return 0
