# The circuit breaker's policy and state machine, free of I/O.
#
# Rules:
# - The states and the events that move between them are the table `TRANSITIONS`, and nothing
#   else changes `state`. An event the table has no row for raises ValueError and leaves the
#   breaker untouched. The docs' state diagram is generated from the same table.
# - Closed: every counted outcome enters the sliding window; after each one the breaker trips
#   (to open) when `consecutive_failures` failures came in a row, or, once the window holds at
#   least `minimum_calls` outcomes, when its failure rate or slow-call rate reaches its
#   threshold. Rates are compared as `count / calls >= threshold`.
# - Open: every call is refused until `open_for` has passed since the trip (doubling with each
#   trip since the breaker last closed, up to `max_open_for`); the first look after that
#   (a call, or reading the state) moves it to half-open.
# - Half-open: a probe is admitted while fewer than `half_open_calls` probes are running (of
#   any period: a probe of an earlier half-open period that is still out holds its place) and
#   fewer than `half_open_calls` were admitted in this period; the rest are refused. A probe
#   that fails (or is slow, when slow calls are detected) trips the breaker again; when
#   `half_open_calls` probes of this period have succeeded it closes, with an empty window. A
#   probe whose outcome does not count (excluded, cancelled) frees its places for another.
# - A probe that has not reported `probe_timeout` after it was admitted is presumed lost (its
#   caller crashed or hangs): it frees its place, and if it belongs to the current half-open
#   period, the breaker trips again. So a lost probe cannot hold the breaker half-open for good.
# - Forced open refuses everything and disabled admits everything and counts nothing, until a
#   manual close; a manual close (or reset) always lands closed with an empty window.
# - Every transition starts a new epoch. A call is admitted in an epoch and its outcome only
#   counts in that same epoch: calls admitted before a trip do not count after it, and a
#   probe's outcome cannot leak into the next half-open period.
# - Only a failure or a slow call trips the breaker: thresholds are checked after each one is
#   counted, never after a quick success (which cannot raise a rate in a count window, and in a
#   time window only lets older successes age out; the next failure sees that).
# - The hot path: while closed, `counter` is an itertools.count made for this closed epoch (its
#   identity is the epoch). A quick success with nothing else to check is counted by calling
#   `next()` on it, without the lock; the core folds those successes into the window, before
#   the outcome that follows them, at the next locked look (`_fold`). A call admitted before a
#   transition advances a counter that is never folded again. Successes counted this way land
#   in the window in the order the locks were taken, which is the only order concurrent calls
#   have. Time windows count each success under the lock, in the bucket of its own time.
# - Outcomes are classified here (what counts as a failure, a success, or nothing); the
#   drivers only measure. Time arrives as an argument, on one monotonic scale.
# - Sharing: a breaker's whole state converts to plain data (`to_data`) and back
#   (`from_data`), so a backend can keep it under a version and processes change it by
#   compare-and-set. A process records its closed outcomes, in order, in `journal`; `apply`
#   replays a process's `Exchange` (those outcomes, its rejections, its probes' reports, a
#   manual action, a request for a probe's place) onto the stored state. The rules are these
#   same methods either way: nothing is written twice. `stored_policy` reads back from the data
#   what reading and acting on it needs, for a tool that has not the breaker's own settings.
from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

import attrs

from ..typing import ExceptionPredicate, ExceptionTypes, ResultPredicate
from .matching import Handling, Matching, convert_on, exception_types, matching_field
from .primitives import needs_primitives
from .seconds import Seconds, finite_number, positive_seconds
from .window import FAILURE, CountWindow, TimeWindow, Window

__all__ = [
    "IGNORED",
    "Admission",
    "Exchange",
    "TRANSITIONS",
    "BreakerCore",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    "Permit",
    "Transition",
    "Trigger",
]


class BreakerState(enum.Enum):
    """The state of a circuit breaker."""

    CLOSED = "closed"
    """Calls pass and their outcomes are counted."""
    OPEN = "open"
    """Calls are refused until the open time has passed."""
    HALF_OPEN = "half_open"
    """A few probe calls pass; their outcomes decide between closed and open."""
    FORCED_OPEN = "forced_open"
    """Opened by hand; calls are refused until the breaker is closed by hand."""
    DISABLED = "disabled"
    """Switched off by hand; calls pass and nothing is counted until it is closed by hand."""


class Trigger(enum.Enum):
    """What moves a breaker from one state to another."""

    TRIP = "trip"  # a threshold was crossed, or a probe failed or was lost
    WAIT_OVER = "wait_over"  # the open time has passed
    PROBES_PASSED = "probes_passed"  # every probe of a half-open period succeeded
    FORCE_OPEN = "force_open"  # by hand
    DISABLE = "disable"  # by hand
    CLOSE = "close"  # by hand: close() or reset()


_S = BreakerState
_MANUAL = ((Trigger.FORCE_OPEN, _S.FORCED_OPEN), (Trigger.DISABLE, _S.DISABLED))

TRANSITIONS: Final[Mapping[tuple[BreakerState, Trigger], BreakerState]] = MappingProxyType(
    {
        (_S.CLOSED, Trigger.TRIP): _S.OPEN,
        (_S.OPEN, Trigger.WAIT_OVER): _S.HALF_OPEN,
        (_S.HALF_OPEN, Trigger.TRIP): _S.OPEN,
        (_S.HALF_OPEN, Trigger.PROBES_PASSED): _S.CLOSED,
        **{
            (state, trigger): target
            for state in BreakerState
            for trigger, target in _MANUAL
            if state is not target
        },
        **{(state, Trigger.CLOSE): _S.CLOSED for state in BreakerState},
    }
)
"""Every transition: ``(state, trigger) -> new state``. Any other pair is refused."""

IGNORED: Final = -1
"""The outcome of a call that does not count (excluded, cancelled, interrupted)."""

_COUNTING = Handling(does="counts", done="counted", purpose="to count as failures")
_ACTIONS: Final[dict[str, Callable[[BreakerCore, float], Transition | None]]] = {}
_MAX_DOUBLINGS = 60


class Transition(NamedTuple):
    """One change of state, as reported in events."""

    source: BreakerState
    target: BreakerState
    reason: str
    failure_rate: float | None  # in the window when it happened; None for an empty window
    slow_call_rate: float | None  # likewise; None when slow calls are not detected
    open_for: float | None  # seconds the breaker stays open, when it opened
    time: float


class Permit(NamedTuple):
    """A call admitted outside the closed state: probe number *probe* (from 1) of *epoch*.

    A disabled breaker's calls get probe 0 in no epoch: they count nothing. Calls admitted
    closed get the epoch's success counter as their permit instead.
    """

    epoch: int
    probe: int


Admission: TypeAlias = "itertools.count[int] | Permit"
"""What a call is admitted with: the closed epoch's success counter, or a Permit."""


class Exchange(NamedTuple):
    """What one process brings to the shared state of a breaker, to `BreakerCore.apply`.

    *outcomes* are the closed outcomes of calls admitted in closed epoch *epoch*, in order: a
    negative number ``-n`` stands for ``n`` quick successes. A refusal answered to *admit* is
    not counted in the state it is applied to: the asking process counts its refusals and
    brings them as *rejected*.
    """

    epoch: int = -1
    outcomes: tuple[int, ...] = ()
    rejected: int = 0
    probes: tuple[tuple[Permit, int], ...] = ()  # finished probes, each with its outcome
    action: str | None = None  # "force_open", "disable", "close" or "reset"
    admit: bool = False  # ask for a probe's place, or learn that calls may pass


_UNCOUNTED: Final = Permit(-1, 0)  # matches no epoch: disabled calls count nothing


def _rate(name: str, value: object) -> float | None:
    if value is None:
        return None
    hint = f"give a fraction above 0 and at most 1, e.g. {name}=0.5 for 50%"
    rate = finite_number(name, value, hint)
    if not 0 < rate <= 1:
        raise ValueError(f"{name}={value!r} is not a fraction above 0 and at most 1: {hint}")
    return rate


def _failure_rate(value: float | None) -> float | None:
    return _rate("failure_rate", value)


def _slow_call_rate(value: float | None) -> float | None:
    return _rate("slow_call_rate", value)


def _whole(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be a whole number, e.g. {name}=5")
    if value < 1:
        raise ValueError(f"{name}={value!r} must be at least 1")


def _check_whole(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    _whole(attribute.name, value)


def _check_optional_whole(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None:
        _whole(attribute.name, value)


def _check_window(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, timedelta):
        positive_seconds("window", value)
        return
    if isinstance(value, float):
        raise TypeError(
            f"window={value!r} is ambiguous: window=100 means the last 100 calls, "
            f"window=timedelta(seconds={value:g}) the calls of the last {value:g} seconds"
        )
    _whole("window", value)


def _slow_call_after(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("slow_call_after", value)


def _max_open_for(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("max_open_for", value)


def _open_for(value: Seconds) -> float:
    return positive_seconds("open_for", value)


def _sync_interval(value: Seconds) -> float:
    return positive_seconds("sync_interval", value)


def _probe_timeout(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("probe_timeout", value)


def _on(given: ExceptionTypes | ExceptionPredicate) -> ExceptionTypes | ExceptionPredicate:
    return convert_on(given, _COUNTING)


def _exclude(given: ExceptionTypes | tuple[()]) -> tuple[type[Exception], ...]:
    return exception_types("exclude", given, _COUNTING)


def _check_callable(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name}={value!r} must be a callable or None")


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """When a circuit breaker opens and closes. Every field is also a keyword of :func:`breaker`.

    Attributes:
        failure_rate: Trip when at least this fraction of the calls in the window failed
            (once it holds *minimum_calls*); ``None`` to trip on other grounds only.
        window: The sliding window the rates are measured over: a whole number for the last
            that many calls, or a ``timedelta`` for the calls of that last stretch of time
            (measured in 10 buckets, so an outcome leaves it between 90% and 100% of the
            window after it happened).
        minimum_calls: How many outcomes the window must hold before its rates can trip the
            breaker, so that one failure out of one call does not.
        consecutive_failures: Also trip after this many failures in a row; ``None`` for no
            such rule.
        slow_call_after: A call lasting at least this long (seconds or a ``timedelta``) is
            slow; ``None`` to not detect slow calls.
        slow_call_rate: Trip when at least this fraction of the calls in the window were slow
            (default 1.0, all of them, once *slow_call_after* is set).
        on: The exception types that count as failures, or a predicate taking the exception.
            Any other exception counts as a success: it says the dependency answered.
        exclude: Exception types that count as nothing, neither failure nor success.
        on_result: A predicate taking the returned value: when true, the call counts as a
            failure (its value is still returned).
        open_for: Seconds (or a ``timedelta``) the breaker stays open before probing.
        max_open_for: If set, each trip since the breaker last closed doubles the open time,
            up to this many seconds; ``None`` keeps it at *open_for*.
        half_open_calls: How many probes run at once while half-open; the breaker closes
            when that many have succeeded.
        probe_timeout: Seconds (or a ``timedelta``) from half-opening after which probes that
            have not reported are presumed lost (their caller crashed or hangs), and the
            breaker opens again; ``None`` waits for them forever.
        fallback: Called with the call's arguments instead of the function while the breaker
            refuses calls; its return value (awaited, for an async function) is returned.
        shared: Keep the breaker's state on the backend, shared by every process that uses
            the name there (see the Circuit breaking guide for what that promises).
        backend: With *shared*, the backend to keep it on; by default the configured one.
        sync_interval: With *shared*, how old (in seconds) this process's view of the shared
            state may get before a call brings it up to date, its outcomes with it.
    """

    failure_rate: float | None = attrs.field(default=0.5, converter=_failure_rate)
    window: int | timedelta = attrs.field(default=100, validator=_check_window)
    minimum_calls: int = attrs.field(default=10, validator=_check_whole)
    consecutive_failures: int | None = attrs.field(default=None, validator=_check_optional_whole)
    slow_call_after: float | None = attrs.field(default=None, converter=_slow_call_after)
    slow_call_rate: float | None = attrs.field(default=None, converter=_slow_call_rate)
    on: ExceptionTypes | ExceptionPredicate = attrs.field(default=Exception, converter=_on)
    exclude: tuple[type[Exception], ...] = attrs.field(default=(), converter=_exclude)
    on_result: ResultPredicate | None = attrs.field(default=None, validator=_check_callable)
    open_for: float = attrs.field(default=30.0, converter=_open_for)
    max_open_for: float | None = attrs.field(default=None, converter=_max_open_for)
    half_open_calls: int = attrs.field(default=1, validator=_check_whole)
    probe_timeout: float | None = attrs.field(default=60.0, converter=_probe_timeout)
    fallback: Callable[..., Any] | None = attrs.field(default=None, validator=_check_callable)
    shared: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    backend: object = attrs.field(
        default=None, validator=needs_primitives("get_versioned", "set_versioned")
    )
    sync_interval: float = attrs.field(default=0.25, converter=_sync_interval)

    _matching: Matching = matching_field()

    def __attrs_post_init__(self) -> None:
        window = self.window
        if isinstance(window, int) and self.minimum_calls > window:
            raise ValueError(
                f"minimum_calls={self.minimum_calls} is more than the window of {window} calls "
                "holds, so the rates could never trip the breaker: lower minimum_calls or "
                "widen the window"
            )
        if self.slow_call_rate is not None and self.slow_call_after is None:
            raise ValueError(
                "slow_call_rate= needs slow_call_after=: the time from which a call is slow, "
                "e.g. slow_call_after=2.0"
            )
        if (
            self.failure_rate is None
            and self.consecutive_failures is None
            and self.slow_call_after is None
        ):
            raise ValueError(
                "failure_rate=None with no consecutive_failures= or slow_call_after= would "
                "never trip the breaker: give one of them"
            )
        if self.backend is not None and not self.shared:
            raise ValueError(
                "backend= keeps a shared breaker's state: add shared=True, or leave backend= "
                "out for a breaker of this process alone"
            )
        if self.max_open_for is not None and self.max_open_for < self.open_for:
            raise ValueError(
                f"max_open_for={self.max_open_for!r} is shorter than open_for={self.open_for!r}"
            )

    @property
    def slow_threshold(self) -> float | None:
        """The slow-call rate that trips the breaker, or ``None`` when slow calls are ignored."""
        if self.slow_call_after is None:
            return None
        return 1.0 if self.slow_call_rate is None else self.slow_call_rate

    def new_window(self) -> Window:
        """Return an empty window of the policy's kind and size."""
        if isinstance(self.window, timedelta):
            return TimeWindow(self.window.total_seconds())
        return CountWindow(self.window)

    def open_time(self, trips: int) -> float:
        """Return how long the breaker stays open after its *trips*-th trip since it closed."""
        if self.max_open_for is None:
            return self.open_for
        return min(self.open_for * 2.0 ** min(trips - 1, _MAX_DOUBLINGS), self.max_open_for)

    def error_outcome(self, exc: BaseException) -> int:
        """Return what a call that raised *exc* counts as: FAILURE, 0 (a success) or IGNORED."""
        if not isinstance(exc, Exception) or isinstance(exc, self.exclude):
            return IGNORED
        return FAILURE if self._matching.matches(exc) else 0


@attrs.frozen(kw_only=True)
class BreakerStats:
    """A snapshot of a circuit breaker, as :meth:`resilient.Breaker.stats` returns it.

    Attributes:
        name: The breaker's name.
        state: Its state when the snapshot was taken.
        calls: Outcomes in the sliding window.
        failures: Failures among them.
        slow_calls: Slow calls among them (0 when slow calls are not detected).
        failure_rate: ``failures / calls``, or ``None`` for an empty window.
        slow_call_rate: ``slow_calls / calls``, or ``None`` for an empty window or when slow
            calls are not detected.
        consecutive_failures: Failures in a row, counted while closed.
        rejected: Calls refused since the breaker was made or last reset.
        trips: Trips since the breaker last closed (what the open time doubles with).
        until_half_open: Seconds until an open breaker lets probes through; ``None`` when it
            is not open.
    """

    name: str
    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    consecutive_failures: int
    rejected: int
    trips: int
    until_half_open: float | None


class BreakerCore:
    """The state of one circuit breaker. Not thread-safe: its owner holds a lock around it."""

    __slots__ = (
        "_folded",
        "_reads",
        "_slow_threshold",
        "consecutive",
        "counter",
        "epoch",
        "half_open_since",
        "in_flight",
        "journal",
        "next_probe",
        "open_until",
        "opened_for",
        "passed",
        "policy",
        "probes",
        "rejected",
        "state",
        "trips",
        "window",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.window = policy.new_window()
        self._slow_threshold = policy.slow_threshold
        self.state = BreakerState.CLOSED
        self.epoch = 0
        self.counter: itertools.count[int] | None = None
        self._reads = self._folded = 0
        self._count_afresh()
        self.consecutive = 0
        self.trips = 0
        self.open_until = 0.0
        self.opened_for = 0.0
        self.half_open_since = 0.0
        self.probes = 0  # admitted in this half-open period (an uncounted one gives its place back)
        self.passed = 0
        self.next_probe = 1
        # every probe not yet reported, of any period: its number -> (its epoch, admitted at)
        self.in_flight: dict[int, tuple[int, float]] = {}
        self.rejected = 0
        # when set, every closed outcome counted is also appended here, in order (see Exchange)
        self.journal: list[int] | None = None

    def tick(self, now: float) -> Transition | None:
        """Make the transition time alone makes due by *now*, if any."""
        if self.in_flight and self.policy.probe_timeout is not None:
            transition = self._give_up_lost_probes(now, self.policy.probe_timeout)
            if transition is not None:
                return transition
        if self.state is BreakerState.OPEN and now >= self.open_until:
            return self._move(Trigger.WAIT_OVER, now, "open_for_elapsed")
        return None

    def _give_up_lost_probes(self, now: float, timeout: float) -> Transition | None:
        lost = [n for n, (_, admitted) in self.in_flight.items() if now - admitted >= timeout]
        current = False
        for number in lost:
            epoch, _ = self.in_flight.pop(number)
            current = current or epoch == self.epoch
        if current and self.state is BreakerState.HALF_OPEN:
            return self._move(Trigger.TRIP, now, "probe_lost")
        return None

    def admit(self, now: float) -> tuple[Admission | float, Transition | None]:
        """Decide on a call at *now*: a permit, or the seconds left before probes are let in.

        Refused while open: the seconds until half-open; forced open: infinity; half-open
        with every probe place taken: 0.0. Also returns the transition the look made, if any.
        """
        transition = self.tick(now)
        state = self.state
        if state is BreakerState.CLOSED:
            assert self.counter is not None  # there is one while closed
            return self.counter, transition
        if state is BreakerState.DISABLED:
            return _UNCOUNTED, transition
        limit = self.policy.half_open_calls
        if state is BreakerState.HALF_OPEN and self.probes < limit and len(self.in_flight) < limit:
            self.probes += 1
            number = self.next_probe
            self.next_probe = number + 1
            self.in_flight[number] = (self.epoch, now)
            return Permit(self.epoch, number), transition
        self.rejected += 1
        return self.remaining(now), transition

    def remaining(self, now: float) -> float:
        """Return the seconds a refused call is told to wait (see :meth:`admit`)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.open_until - now)
        if self.state is BreakerState.FORCED_OPEN:
            return math.inf
        return 0.0

    def record(self, permit: Admission, outcome: int, now: float) -> Transition | None:
        """Count the *outcome* of a call admitted with *permit*; return the transition it made."""
        if type(permit) is Permit:
            return self._record_probe(permit, outcome, now)
        if permit is not self.counter or outcome == IGNORED:
            return None
        self._fold(now)
        return self._record_closed(outcome, now)

    def _record_closed(self, outcome: int, now: float) -> Transition | None:
        window = self.window
        window.add(outcome, now)
        if self.journal is not None:
            self.journal.append(outcome)
        if not outcome:
            self.consecutive = 0
            return None
        if outcome & FAILURE:
            self.consecutive += 1
            limit = self.policy.consecutive_failures
            if limit is not None and self.consecutive >= limit:
                return self._move(Trigger.TRIP, now, "consecutive_failures")
        else:
            self.consecutive = 0
        calls = window.calls
        if calls < self.policy.minimum_calls:
            return None
        threshold = self.policy.failure_rate
        if threshold is not None and window.failures / calls >= threshold:
            return self._move(Trigger.TRIP, now, "failure_rate")
        threshold = self._slow_threshold
        if threshold is not None and window.slow / calls >= threshold:
            return self._move(Trigger.TRIP, now, "slow_call_rate")
        return None

    def _record_probe(self, permit: Permit, outcome: int, now: float) -> Transition | None:
        if self.in_flight.pop(permit.probe, None) is None:  # not counted, or presumed lost
            return None
        if permit.epoch != self.epoch:  # a probe of an earlier period: it only held a place
            return None
        if outcome == IGNORED:
            self.probes -= 1
            return None
        if outcome:  # failed, or slow
            return self._move(Trigger.TRIP, now, "probe_failed")
        self.passed += 1
        if self.passed >= self.policy.half_open_calls:
            return self._move(Trigger.PROBES_PASSED, now, "probes_passed")
        return None

    def force_open(self, now: float) -> Transition | None:
        """Refuse every call until :meth:`close`; ``None`` if already forced open."""
        if self.state is BreakerState.FORCED_OPEN:
            return None
        return self._move(Trigger.FORCE_OPEN, now, "forced_open")

    def disable(self, now: float) -> Transition | None:
        """Admit every call and count none until :meth:`close`; ``None`` if already disabled."""
        if self.state is BreakerState.DISABLED:
            return None
        return self._move(Trigger.DISABLE, now, "disabled")

    def close(self, now: float, reason: str = "closed") -> Transition:
        """Close by hand, with an empty window and the open time back to *open_for*."""
        return self._move(Trigger.CLOSE, now, reason)

    def reset(self, now: float) -> Transition:
        """Close by hand and forget every count, the rejections included."""
        self.rejected = 0
        return self.close(now, "reset")

    def rates(self) -> tuple[float | None, float | None]:
        """Return the window's failure rate and slow-call rate (``None`` where undefined)."""
        window = self.window
        calls = window.calls
        if not calls:
            return None, None
        slow = None if self._slow_threshold is None else window.slow / calls
        return window.failures / calls, slow

    def stats(self, name: str, now: float) -> BreakerStats:
        """Return a snapshot at *now* (make any transition due first, with :meth:`tick`)."""
        self._fold(now)
        window = self.window
        window.advance(now)
        failure_rate, slow_call_rate = self.rates()
        open_ = self.state is BreakerState.OPEN
        return BreakerStats(
            name=name,
            state=self.state,
            calls=window.calls,
            failures=window.failures,
            slow_calls=window.slow,
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
            consecutive_failures=self.consecutive,
            rejected=self.rejected,
            trips=self.trips,
            until_half_open=max(0.0, self.open_until - now) if open_ else None,
        )

    def act(self, action: str, now: float) -> Transition | None:
        """Make the manual *action* ("force_open", "disable", "close" or "reset") at *now*."""
        return _ACTIONS[action](self, now)

    def apply(
        self, exchange: Exchange, now: float
    ) -> tuple[list[Transition], Permit | float | None]:
        """Apply what one process brings (see Exchange) at *now*; return what changed.

        The transitions made, in order, and the answer to ``exchange.admit``: a probe's
        permit, the seconds a refused call is told, or ``None`` when calls pass (closed or
        disabled; also when nothing was asked).
        """
        transitions: list[Transition] = []

        def made(transition: Transition | None) -> None:
            if transition is not None and transition.source is not transition.target:
                transitions.append(transition)

        self.rejected += exchange.rejected
        if exchange.epoch == self.epoch and self.state is BreakerState.CLOSED:
            for outcome in exchange.outcomes:
                if outcome < 0:
                    self._add_successes(-outcome, now)
                    continue
                transition = self._record_closed(outcome, now)
                if transition is not None:  # tripped: the rest belong to an epoch now over
                    made(transition)
                    break
        for permit, outcome in exchange.probes:
            made(self.record(permit, outcome, now))
        made(self.tick(now))
        if exchange.action is not None:
            made(self.act(exchange.action, now))
        if not exchange.admit:
            return transitions, None
        decision, transition = self.admit(now)
        made(transition)
        if isinstance(decision, float):
            self.rejected -= 1  # the asking process counts the calls it refuses, with its own
            return transitions, decision
        return transitions, decision if isinstance(decision, Permit) else None

    def to_data(self, now: float) -> dict[str, object]:
        """Return the whole state as plain data (ints, floats, strings, bytes, lists)."""
        self._fold(now)
        window = self.window
        shape: list[object]
        if isinstance(window, CountWindow):
            shape = ["count", window.size, bytes(window._ring), window._next]
        else:
            assert isinstance(window, TimeWindow)
            buckets = [window._bucket_calls, window._bucket_failures, window._bucket_slow]
            shape = ["time", window.seconds, window._head, *(list(each) for each in buckets)]
        return {
            "state": self.state.value,
            "epoch": self.epoch,
            "consecutive": self.consecutive,
            "trips": self.trips,
            "open_until": self.open_until,
            "opened_for": self.opened_for,
            "half_open_since": self.half_open_since,
            "probes": self.probes,
            "passed": self.passed,
            "next_probe": self.next_probe,
            "in_flight": [[number, *held] for number, held in self.in_flight.items()],
            "rejected": self.rejected,
            "window": [*shape, window.calls, window.failures, window.slow],
            "slow_threshold": self._slow_threshold,
        }

    @staticmethod
    def stored_policy(data: object) -> BreakerPolicy:
        """Return settings under which *data* (from :meth:`to_data`) reads as it was written.

        Its window's kind and size, and its slow-call threshold: enough to read the state and
        to act on it by hand (:meth:`act`) where the breaker's own settings are unknown (an
        operator's tool). No probe is ever presumed lost under them (that is for the
        processes that know ``probe_timeout``). Raises ValueError when *data* is not a state.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError(type(data).__name__)  # noqa: TRY301 - reported below
            kind, size = data["window"][:2]
            threshold = data.get("slow_threshold")
            if kind not in ("count", "time"):
                raise ValueError(f"a window of kind {kind!r}")  # noqa: TRY301 - see above
            window: int | timedelta = int(size) if kind == "count" else timedelta(seconds=size)
            slow = (
                {} if threshold is None else {"slow_call_after": 1.0, "slow_call_rate": threshold}
            )
            return BreakerPolicy(
                window=window,
                minimum_calls=min(10, window) if isinstance(window, int) else 10,
                probe_timeout=None,
                **slow,
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"not a breaker's state: {error!r}") from error

    @classmethod
    def from_data(cls, policy: BreakerPolicy, data: object) -> BreakerCore:
        """Return the breaker *data* (from :meth:`to_data`) describes, under *policy*.

        A window of another kind or size than *policy*'s starts empty. Raises ValueError
        when *data* is not such a state.
        """
        try:
            return cls._from_data(policy, data)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"not a breaker's state: {error}") from error

    @classmethod
    def _from_data(cls, policy: BreakerPolicy, data: object) -> BreakerCore:
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        core = cls(policy)
        core.state = BreakerState(data["state"])
        core.epoch = int(data["epoch"])
        core.counter = itertools.count() if core.state is BreakerState.CLOSED else None
        core.consecutive = int(data["consecutive"])
        core.trips = int(data["trips"])
        core.open_until = float(data["open_until"])
        core.opened_for = float(data["opened_for"])
        core.half_open_since = float(data["half_open_since"])
        core.probes = int(data["probes"])
        core.passed = int(data["passed"])
        core.next_probe = int(data["next_probe"])
        core.in_flight = {
            int(number): (int(epoch), float(admitted))
            for number, epoch, admitted in data["in_flight"]
        }
        core.rejected = int(data["rejected"])
        core._restore_window(list(data["window"]))
        return core

    def _restore_window(self, shape: list[Any]) -> None:
        window = self.window
        kind, size, *rest = shape
        *buckets, calls, failures, slow = rest
        if isinstance(window, CountWindow) and kind == "count" and size == window.size:
            ring, position = buckets
            if len(ring) != window.size:
                raise ValueError("a count window's ring of the wrong size")
            window._ring[:] = ring
            window._next = int(position)
        elif isinstance(window, TimeWindow) and kind == "time" and size == window.seconds:
            head, *lists = buckets
            window._head = int(head)
            for target, source in zip(
                (window._bucket_calls, window._bucket_failures, window._bucket_slow),
                lists,
                strict=True,
            ):
                target[:] = [int(count) for count in source]
        else:
            return  # the settings changed: a fresh window
        window.calls, window.failures, window.slow = int(calls), int(failures), int(slow)

    def _move(self, trigger: Trigger, now: float, reason: str) -> Transition:
        source = self.state
        target = TRANSITIONS.get((source, trigger))
        if target is None:
            raise ValueError(f"a {source.value} breaker has no transition on {trigger.value}")
        self._fold(now)
        failure_rate, slow_call_rate = self.rates()
        self.state = target
        self.epoch += 1
        self.counter = None
        if target is BreakerState.OPEN:
            self.trips += 1
            self.opened_for = self.policy.open_time(self.trips)
            self.open_until = now + self.opened_for
        elif target is BreakerState.HALF_OPEN:
            self.probes = self.passed = 0
            self.half_open_since = now
        elif target is BreakerState.CLOSED:
            self.window.clear()
            self.consecutive = 0
            self.trips = 0
            self._count_afresh()
        open_for = self.opened_for if target is BreakerState.OPEN else None
        return Transition(source, target, reason, failure_rate, slow_call_rate, open_for, now)

    def continue_counting(self, other: BreakerCore) -> None:
        """Take over *other*'s success counter, so that calls it admitted count here."""
        self.counter, self._reads, self._folded = other.counter, other._reads, other._folded

    def _count_afresh(self) -> None:
        """Start counting quick successes of a new closed epoch."""
        self.counter = itertools.count()
        self._reads = self._folded = 0

    def _fold(self, now: float) -> None:
        """Move the quick successes counted without the lock into the window."""
        counter = self.counter
        if counter is None:
            return
        # next() returns how many times it was called before: successes plus our own reads
        seen = next(counter) - self._reads
        self._reads += 1
        fresh = seen - self._folded
        if fresh:
            self._folded = seen
            self._add_successes(fresh, now)

    def _add_successes(self, count: int, now: float) -> None:
        self.consecutive = 0
        self.window.add_successes(count, now)
        if self.journal is not None:
            self.journal.append(-count)


_ACTIONS.update(
    force_open=BreakerCore.force_open,
    disable=BreakerCore.disable,
    close=BreakerCore.close,
    reset=BreakerCore.reset,
)
