# The demo behind `python -m resilient demo`: every capability decides, live, against a
# simulated flaky upstream, and a summary table counts what each one decided. The same demo
# across processes sharing Redis is `_demo_fleet`, built on the table and rows of this module.
#
# Rules:
# - It runs on the embedded defaults (a MemoryBackend, the system clock): no network. Times
#   are real and short; the whole tour takes about three seconds.
# - Rows are printed as things happen: what the upstream did, what the caller got, and what
#   the library decided (from its events, through `describe`).
# - Every figure printed comes from what the upstream counted, what callers got, or the
#   events the library reported (a StatsObserver): never from what the demo expects.
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, ClassVar, NamedTuple, TextIO

from . import wait
from ._breaker import breaker
from ._bulkhead import bulkhead
from ._cache import cache_status, cached
from ._config import DEFAULTS, configure, reset_defaults
from ._deadline import deadline
from ._dedupe import deduped
from ._fallback import fallback
from ._idempotent import idempotent
from ._lock import lock
from ._ratelimit import rate_limited
from ._retry import RetryBudget, retry
from ._timeout import timeout
from .events import (
    BackendFailed,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BulkheadAdmitted,
    BulkheadRejected,
    DedupeTakenOver,
    Event,
    FallbackUsed,
    IdempotencyClaimed,
    IdempotencyConflicted,
    IdempotencyInProgress,
    IdempotencyReplayed,
    LockContended,
    RateLimitAllowed,
    RateLimitRejected,
    RetriesExhausted,
    RetryScheduled,
)
from .exceptions import LockNotAcquiredError
from .observers import StatsObserver

__all__ = [
    "PATIENCE",
    "Line",
    "Table",
    "UpstreamError",
    "describe",
    "ms",
    "pause",
    "cache_answer",
    "times",
    "together",
    "tour",
]


PATIENCE = 60.0  # seconds to wait for another thread or process before giving up on it


class UpstreamError(ConnectionError):
    """What the simulated upstream raises; may carry a Retry-After hint like an HTTP 503."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def pause(seconds: float) -> None:
    """Let *seconds* pass (on the configured clock: the system's, in the demo)."""
    DEFAULTS.clock.sleep(seconds)


def cache_answer() -> str:
    """Return how the latest cached call here was answered: HIT, MISS, ..."""
    status = cache_status()
    return "-" if status is None else status.name


def times(count: int) -> str:
    """Return *count* as "once", "twice" or "N times"."""
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def ms(seconds: float | None) -> str:
    """Return *seconds* as whole milliseconds, e.g. "150 ms"."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def describe(event: Event) -> str | None:  # noqa: PLR0912 - one case per kind of event
    """Return what the live table says of *event*, or None for one it only counts."""
    match event:
        case RetryScheduled():
            kind = (event.error_type or "result").rpartition(".")[2]
            return f"retry in {ms(event.delay)} ({kind})"
        case RetriesExhausted():
            return f"give up after {event.attempts} attempts: {event.reason}"
        case BreakerOpened():
            return f"breaker opened ({event.reason}): refuses calls for {ms(event.open_for)}"
        case BreakerHalfOpened():
            return "breaker half-open: lets one probe through"
        case BreakerClosed():
            return f"breaker closed ({event.reason})"
        case IdempotencyClaimed():
            return "key claimed: this call executes"
        case IdempotencyReplayed():
            return "stored outcome replayed: not executed again"
        case IdempotencyConflicted():
            return "same key, another payload: refused"
        case IdempotencyInProgress():
            return "the first call still runs: " + ("wait for it" if event.waiting else "say so")
        case LockContended():
            return f"lock {event.policy!r} is held by someone else"
        case RateLimitRejected():
            return f"over the limit: the next token is free in {ms(event.retry_after)}"
        case RateLimitAllowed() if event.waited > 0:
            return f"waited {ms(event.waited)} for a token"
        case FallbackUsed():
            return f"fallback answers the {event.error_type.rpartition('.')[2]}"
        case BulkheadAdmitted():
            return f"a slot came free after {ms(event.waited)} in the queue"
        case BulkheadRejected():
            return "bulkhead full: refused " + (
                "at once" if event.waited == 0 else f"after {ms(event.waited)}"
            )
        case DedupeTakenOver():
            return "the flight's leader left: this call leads it now"
        case BackendFailed():
            return f"backend {event.operation} failed ({event.error_type}): carries on without it"
    return None


class Line(NamedTuple):
    """One row of the summary table."""

    capability: str
    calls: int
    upstream: int  # how often the upstream (the work a capability protects) ran
    decided: str


class Table:
    """Prints the live table: a section per scene, a row per thing someone did, a summary."""

    who_width: ClassVar[int] = 9

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def section(self, title: str, code: str) -> None:
        """Start a section: its title and the code it runs, then the table's header."""
        with self._lock:
            self.out.write(
                f"\n== {title}\n   {code}\n\n   {'time':>7}  {'who':<{self.who_width}}  what\n"
            )
            self.started = time.monotonic()

    def row(self, who: str, what: str) -> None:
        """Print one row now, timed from the start of the section."""
        elapsed = (time.monotonic() - self.started) * 1000
        with self._lock:
            self.out.write(f"   {elapsed:>5.0f}ms  {who:<{self.who_width}}  {what}\n")
            self.out.flush()

    def summary(self, title: str, lines: Sequence[Line]) -> None:
        """Print the summary table."""
        width = max(len(line.capability) for line in lines)
        self.out.write(
            f"\n== {title}\n\n   {'capability':<{width}}  {'calls':>5}  {'upstream':>8}"
            "  what resilient decided\n"
        )
        for line in lines:
            self.out.write(
                f"   {line.capability:<{width}}  {line.calls:>5}  {line.upstream:>8}  "
                f"{line.decided}\n"
            )
        self.out.flush()


# the tour, in one process ------------------------------------------------------------------


class _Tour(Table):
    """The table of the tour in one process, with what each chapter counted."""

    def __init__(self, out: TextIO, stats: StatsObserver) -> None:
        super().__init__(out)
        self.stats = stats
        self.quiet = False
        self.number = 0
        self.calls = 0
        self.ran = 0
        self.lines: list[Line] = []

    def scene(self, title: str, code: str) -> None:
        """Start the next numbered section."""
        self.number += 1
        self.section(f"{self.number}. {title}", code)

    def call(self, count: int = 1) -> None:
        """Count calls a caller made."""
        with self._lock:
            self.calls += count

    def upstream(self, what: str, who: str = "upstream") -> int:
        """Count one run of the upstream and print it; return the chapter's count so far."""
        with self._lock:
            self.ran += 1
            ran = self.ran
        if not self.quiet:
            self.row(who, what)
        return ran

    def conclude(self, capability: str, decided: str) -> None:
        """Add the chapter's line to the summary and start counting the next one."""
        self.lines.append(Line(capability, self.calls, self.ran, decided))
        self.calls = self.ran = 0

    def observe(self, event: Event) -> None:
        """Print what the library decided (installed as an observer)."""
        said = describe(event)
        if said is not None and not self.quiet:
            self.row("resilient", said)

    def outcome(self, call: Callable[[], object]) -> object:
        """Make one call, print what the caller got, and return it (or the exception)."""
        self.call()
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - the demo shows whatever happened
            self.raised(exc)
            return exc
        self.row("caller", f"got {result!r}")
        return result

    async def aoutcome(self, call: Coroutine[Any, Any, object], label: str = "") -> object:
        """Await one call, print what the caller got, and return it (or the exception)."""
        self.call()
        try:
            result = await call
        except Exception as exc:  # noqa: BLE001 - the demo shows whatever happened
            self.raised(exc, label)
            return exc
        self.row("caller", f"{label}got {result!r}")
        return result

    def raised(self, exc: Exception, label: str = "") -> None:
        """Print the exception a caller got, with its notes."""
        notes = "; ".join(getattr(exc, "__notes__", []))
        self.row(
            "caller",
            f"{label}raised {type(exc).__name__}: {exc}" + (f" [{notes}]" if notes else ""),
        )


class _Upstream:
    """A scripted dependency: each call consumes the next outcome (an exception or a value)."""

    def __init__(self, tour: _Tour, script: Sequence[object]) -> None:
        self.tour = tour
        self.script = list(script)
        self.calls = 0

    def __call__(self) -> str:
        outcome = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            self.tour.upstream(f"attempt {self.calls}: {type(outcome).__name__}: {outcome}")
            raise outcome
        self.tour.upstream(f"attempt {self.calls}: {outcome}")
        return str(outcome)


def together(count: int, call: Callable[[int], object]) -> None:
    """Run call(1) ... call(count) in threads released at once; wait for all of them."""
    start = threading.Barrier(count)

    def one(number: int) -> None:
        start.wait()
        call(number)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, count + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _retry(tour: _Tour) -> None:
    tour.scene(
        "A transient fault: two dropped connections, then an answer",
        "@retry(on=ConnectionError, attempts=4, wait=wait.exponential(initial=0.02))",
    )
    upstream = _Upstream(tour, [UpstreamError("connection reset")] * 2 + ["200 OK"])
    policy = retry(on=ConnectionError, attempts=4, wait=wait.exponential(initial=0.02), name="api")
    tour.outcome(policy(upstream))

    tour.scene(
        "The upstream says 503 with Retry-After: 0.15 s; the backoff alone would wait 10 ms",
        "@retry(on=ConnectionError, wait=wait.constant(0.01))",
    )
    upstream = _Upstream(tour, [UpstreamError("503 busy", retry_after=0.15), "200 OK"])
    tour.outcome(retry(on=ConnectionError, wait=wait.constant(0.01), name="api")(upstream))

    tour.scene(
        "A dependency that stays down: the original exception comes back, with a note",
        "@retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01))",
    )
    upstream = _Upstream(tour, [UpstreamError("connection refused")])
    tour.outcome(
        retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01), name="api")(upstream)
    )

    tour.scene(
        "A bug is not a transient fault: errors outside on= are raised at once",
        "@retry(on=ConnectionError, attempts=5)",
    )
    upstream = _Upstream(tour, [ValueError("malformed order id")])
    tour.outcome(retry(on=ConnectionError, attempts=5, name="api")(upstream))

    tour.scene(
        "A deadline of 0.1 s: no wait crosses it, no attempt starts after it",
        "@retry(on=ConnectionError, attempts=10, deadline=0.1, wait=wait.constant(0.04))",
    )
    upstream = _Upstream(tour, [UpstreamError("timeout")])
    policy = retry(
        on=ConnectionError, attempts=10, deadline=0.1, wait=wait.constant(0.04), name="api"
    )
    tour.outcome(policy(upstream))

    tour.scene(
        "A retry budget stops a retry storm: 40 calls to a dead upstream, 3 attempts each",
        "@retry(on=ConnectionError, attempts=3, wait=wait.none(), "
        "budget=RetryBudget(ratio=0.1, min_per_second=0.5))",
    )
    tour.out.write("   (rows for the 40 calls are summarised below)\n")
    budget = RetryBudget(ratio=0.1, min_per_second=0.5, window=10)
    upstream = _Upstream(tour, [UpstreamError("down")])
    call = retry(
        on=ConnectionError, attempts=3, wait=wait.none(), budget=budget, name="retry-storm"
    )(upstream)
    gave_up: Counter[str] = Counter()
    configure(observers=[*DEFAULTS.observers, _reasons(gave_up)])
    tour.quiet = True
    for _ in range(40):
        tour.call()
        with contextlib.suppress(ConnectionError):
            call()
    tour.quiet = False
    configure(observers=DEFAULTS.observers[:-1])
    retried = tour.stats.count("retry.scheduled", "retry-storm")
    tour.row("upstream", f"{upstream.calls} attempts in all (80 retries without a budget)")
    tour.row(
        "resilient",
        f"{retried} retries allowed; {gave_up['budget']} calls gave up as the budget ran out",
    )

    tour.scene(
        "Async: five concurrent calls through one decorated coroutine, each with its own count",
        "@retry(on=ConnectionError, attempts=4, wait=wait.constant(0.01)) async def fetch(n)",
    )
    attempts: dict[int, int] = {}

    @retry(on=ConnectionError, attempts=4, wait=wait.constant(0.01))
    async def fetch(n: int) -> str:
        attempts[n] = attempts.get(n, 0) + 1
        tour.ran += 1
        await asyncio.sleep(0)
        if attempts[n] <= n % 4:
            raise UpstreamError(f"call {n} dropped")
        return f"call {n} ok"

    async def five() -> None:
        tour.call(5)
        await asyncio.gather(*(fetch(n) for n in range(5)))

    asyncio.run(five())
    for n in range(5):
        tour.row("caller", f"call {n} ok after {attempts[n]} attempts")
    tour.conclude(
        "retry",
        f"{tour.stats.count('retry.scheduled')} retries; "
        f"gave up on {tour.stats.count('retry.exhausted')} calls (attempts, deadline, budget)",
    )


def _reasons(counter: Counter[str]) -> Callable[[Event], None]:
    def count(event: Event) -> None:
        if isinstance(event, RetriesExhausted):
            counter[event.reason] += 1

    return count


def _breaker(tour: _Tour) -> None:
    tour.scene(
        "A breaker opens after three failures in a row, refuses calls at once, then probes",
        'payments = breaker("payments-api", consecutive_failures=3, open_for=0.2)',
    )
    payments = breaker("payments-api", consecutive_failures=3, open_for=0.2)
    call = payments(_Upstream(tour, [UpstreamError("connection refused")] * 4 + ["200 OK"]))
    for _ in range(6):
        tour.outcome(call)
    pause(0.21)
    tour.row("caller", "0.2 s later: the next call is a probe")
    tour.outcome(call)
    pause(0.21)
    tour.row("caller", "0.2 s later: another probe")
    tour.outcome(call)
    tour.outcome(call)
    count = tour.stats.count
    tour.conclude(
        "breaker",
        f"opened {times(count('breaker.opened', 'payments-api'))}; "
        f"{count('breaker.rejected', 'payments-api')} calls refused at once; "
        f"probed {times(count('breaker.half_opened', 'payments-api'))}; "
        f"now {payments.state.value}",
    )


def _cache(tour: _Tour) -> None:
    tour.scene(
        "A read-through cache: repeat calls are answered from the store",
        "@cached(ttl=60) def profile(user_id)",
    )

    @cached(ttl=60, name="profile")
    def profile(user_id: int) -> dict[str, object]:
        tour.upstream(f"profile({user_id}) computed")
        return {"id": user_id}

    for user_id in (1, 2, 1, 1, 3, 2, 1, 3, 1, 2):
        tour.call()
        profile(user_id)
        tour.row("caller", f"profile({user_id}): {cache_answer()}")

    tour.scene(
        "Eight concurrent calls miss one cold key: the function runs once",
        "@cached(ttl=60) def catalogue() (the upstream takes 50 ms)",
    )

    computed: list[float] = []

    @cached(ttl=60, name="catalogue")
    def catalogue() -> tuple[str, ...]:
        computed.append(time.monotonic())
        tour.upstream("catalogue computed (50 ms)")
        pause(0.05)
        return ("A-17", "B-2")

    def one(number: int) -> None:
        tour.call()
        catalogue()
        tour.row(f"caller {number}", f"catalogue(): {cache_answer()}")

    together(8, one)
    hits, misses = (
        tour.stats.count("cache.hit", "profile"),
        tour.stats.count("cache.missed", "profile"),
    )
    tour.conclude(
        "cache",
        f"hit ratio {hits / (hits + misses):.0%} ({hits} hits, {misses} misses); "
        f"8 concurrent calls on a cold key ran it {times(len(computed))}",
    )


def _dedupe(tour: _Tour) -> None:
    tour.scene(
        "Single flight: 100 concurrent identical calls share one execution per key",
        "@deduped() async def rates(currency) (the upstream takes 50 ms)",
    )

    @deduped(name="rates")
    async def rates(currency: str) -> dict[str, float]:
        tour.upstream(f"rates({currency}) fetched (50 ms)")
        await asyncio.sleep(0.05)
        return {currency: 1.08}

    async def hundred() -> None:
        tour.call(100)
        await asyncio.gather(*(rates("EUR" if n % 5 == 0 else "USD") for n in range(100)))

    asyncio.run(hundred())
    joined = tour.stats.count("dedupe.joined", "rates")
    tour.row("caller", f"100 calls (80 USD, 20 EUR) answered; {joined} joined a running flight")
    asyncio.run(tour.aoutcome(rates("USD"), "after the flight landed, rates(USD): "))
    tour.row("caller", "a landed flight is not a cache: the next call runs again")
    tour.conclude(
        "single flight",
        f"{joined} of 100 concurrent calls joined a flight: {joined / 100:.0%} of executions saved",
    )


def _idempotency(tour: _Tour) -> None:
    tour.scene(
        "Idempotency: a duplicate gets the stored answer; a reused key with another payload "
        "is refused",
        '@idempotent(key="request_id") def create_order(request_id, cents)',
    )
    entered, release = threading.Event(), threading.Event()

    @idempotent(key="request_id", name="create-order")
    def create_order(request_id: str, cents: int) -> dict[str, object]:
        number = tour.upstream(f"create_order({request_id!r}, {cents}) executes")
        if request_id == "9b1e":
            entered.set()
            release.wait(PATIENCE)
        return {"order": f"A-{number}", "cents": cents}

    tour.outcome(lambda: create_order("7f3c", 1250))
    tour.outcome(lambda: create_order("7f3c", 1250))
    tour.outcome(lambda: create_order("7f3c", 9999))
    tour.row("caller", "a slow first call with key 9b1e, and its duplicate while it runs:")
    first = threading.Thread(target=create_order, args=("9b1e", 500))
    tour.call()
    first.start()
    entered.wait(PATIENCE)
    tour.outcome(lambda: create_order("9b1e", 500))
    release.set()
    first.join()
    tour.outcome(lambda: create_order("9b1e", 500))
    count = tour.stats.count
    tour.conclude(
        "idempotency",
        f"{count('idempotency.replayed', 'create-order')} replays of a stored answer; "
        f"{count('idempotency.conflicted', 'create-order')} conflict; "
        f"{count('idempotency.in_progress', 'create-order')} told in progress",
    )


def _lock(tour: _Tour) -> None:
    tour.scene(
        "A lock: three workers want it at once; each lease has a greater fencing token",
        'with lock("sheets-sync", ttl=5, timeout=2) as lease: ... (each holds it 50 ms)',
    )
    tokens: list[int] = []

    def work(number: int) -> None:
        tour.call()
        with lock("sheets-sync", ttl=5, timeout=2) as lease:
            tokens.append(lease.token)
            tour.upstream(f"holds it: writes with fencing token {lease.token}", f"worker {number}")
            pause(0.05)

    together(3, work)

    def try_once() -> str:
        with lock("sheets-sync", timeout=0):
            return "held"

    with lock("sheets-sync", ttl=5) as lease:
        tokens.append(lease.token)
        tour.row("worker 1", f"holds the lock again: fencing token {lease.token}")
        tour.row("caller", 'lock("sheets-sync", timeout=0) tries once:')
        tour.outcome(try_once)
    waited = tour.stats.snapshot()["lock.acquired"]["sheets-sync"]["durations"]["waited"]
    tour.conclude(
        "lock",
        f"{len(tokens)} leases, tokens {', '.join(map(str, tokens))}; "
        f"{tour.stats.count('lock.contended', 'sheets-sync')} found it held; "
        f"lock waits {ms(waited['total'])} in all",
    )


def _rate_limit(tour: _Tour) -> None:
    tour.scene(
        "A rate limit of 5 calls a minute: of a burst of 8, 5 go and 3 are refused at once",
        "@rate_limited(rate=5, per=60.0) def quote(symbol)",
    )

    @rate_limited(rate=5, per=60.0, name="partner-api")
    def quote(symbol: str) -> float:
        tour.upstream(f"quote({symbol})")
        return 101.5

    for _ in range(8):
        tour.outcome(lambda: quote("ACME"))

    tour.scene(
        "With wait=True a call waits for its token instead: one every 50 ms",
        "@rate_limited(rate=20, per=1.0, burst=1, wait=True) def send_sms(number)",
    )

    @rate_limited(rate=20, per=1.0, burst=1, wait=True, name="sms-gateway")
    def send_sms(number: int) -> str:
        tour.upstream(f"sms {number} sent")
        return f"sms {number} sent"

    for number in range(1, 5):
        tour.outcome(partial(send_sms, number))
    waited = tour.stats.snapshot()["rate_limit.allowed"]["sms-gateway"]["durations"]["waited"]
    tour.conclude(
        "rate limit",
        f"{tour.stats.count('rate_limit.rejected')} refused before reaching the upstream; "
        f"waits for tokens {ms(waited['total'])} in all",
    )


def _deadlines(tour: _Tour) -> None:
    tour.scene(
        "A time limit cancels a call that hangs; the fallback answers instead",
        '@fallback(on=TimeoutError, value={"price": None}) @timeout(0.1) async def price(sku)',
    )

    @fallback(on=TimeoutError, value={"price": None}, name="prices")
    @timeout(0.1)
    async def price(sku: str) -> dict[str, object]:
        tour.upstream(f"price({sku}): hangs")
        await asyncio.sleep(PATIENCE)
        return {"price": 12.5}

    tour.outcome(lambda: asyncio.run(price("A-17")))

    tour.scene(
        "A deadline bounds every wait inside it: here a wait for a lock held elsewhere",
        'with deadline(0.1): with lock("sheets-sync"): ... (no timeout of its own)',
    )

    def report() -> str:
        with deadline(0.1), lock("sheets-sync"):
            return "written"

    with lock("sheets-sync", ttl=5):
        tour.row("worker 1", "holds the lock")
        cut = isinstance(tour.outcome(report), LockNotAcquiredError)
    tour.conclude(
        "timeout, deadline",
        f"{tour.stats.count('fallback.used', 'prices')} call cancelled at its limit and "
        f"answered by the fallback; {int(cut)} lock wait cut at the deadline",
    )


def _bulkhead(tour: _Tour) -> None:
    tour.scene(
        "A bulkhead: 2 calls run at once, 2 wait for a slot, the rest are refused at once",
        "@bulkhead(max_concurrent=2, max_waiting=2) async def render(invoice) (50 ms each)",
    )
    running: list[int] = []
    peak = 0

    @bulkhead(max_concurrent=2, max_waiting=2, name="pdf-renderer")
    async def render(invoice: int) -> str:
        nonlocal peak
        running.append(invoice)
        peak = max(peak, len(running))
        tour.upstream(f"render({invoice}) starts; running: {running}")
        await asyncio.sleep(0.05)
        running.remove(invoice)
        return f"invoice-{invoice}.pdf"

    async def six() -> None:
        await asyncio.gather(*(tour.aoutcome(render(n), f"render({n}) ") for n in range(1, 7)))

    asyncio.run(six())
    count = tour.stats.count
    tour.conclude(
        "bulkhead",
        f"at most {peak} ran at once; {count('bulkhead.admitted', 'pdf-renderer')} waited for "
        f"a slot; {count('bulkhead.rejected', 'pdf-renderer')} refused at once",
    )


_CHAPTERS: tuple[Callable[[_Tour], None], ...] = (
    _retry,
    _breaker,
    _cache,
    _dedupe,
    _idempotency,
    _lock,
    _rate_limit,
    _deadlines,
    _bulkhead,
)


def tour(out: TextIO) -> None:
    """Run the tour in this process on the embedded defaults, printing every decision."""
    stats = StatsObserver()
    table = _Tour(out, stats)
    out.write(
        "resilient demo: a tour of every capability against a simulated flaky upstream "
        "(embedded defaults: no network, no Redis)\n"
    )
    saved = DEFAULTS.observers
    configure(observers=[stats, table.observe])
    try:
        for chapter in _CHAPTERS:
            chapter(table)
    finally:
        reset_defaults()
        configure(observers=saved)
    table.summary(
        "Summary: calls made, times the upstream ran, and what resilient decided", table.lines
    )
    out.write(
        "\nThe figures come from the events resilient reported (resilient.observers."
        "StatsObserver) and what the upstream counted.\nAcross processes sharing one Redis: "
        "python -m resilient demo --redis redis://localhost:6379/0 --processes 4\n"
    )
