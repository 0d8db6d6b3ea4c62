"""The retry core: policy validation, a run's decisions, notes and Retry-After parsing."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    NOW,
    RetryAfterCase,
    bad_numbers,
    garbage_retry_after,
    seconds,
    valid_retry_after,
)

from resilient import RetryBudget, wait
from resilient._core.retry import RetryPolicy, RetryRun, parse_retry_after, retry_after_hint

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_TIMESTAMP = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()


def wall() -> float:
    """The wall clock the tests read HTTP-dates against."""
    return NOW


def policy(**options: object) -> RetryPolicy:
    """A policy retrying ConnectionError with no wait, unless the test says otherwise."""
    options.setdefault("on", ConnectionError)
    options.setdefault("wait", wait.none())
    return RetryPolicy(**options)  # type: ignore[arg-type]


def run_of(retry_policy: RetryPolicy, start: float = 0.0, name: str = "fetch") -> RetryRun:
    """The run of one call under *retry_policy* named *name*, started at *start*."""
    return RetryRun(retry_policy, start, retry_policy.attempts, name)


class HintedError(ConnectionError):
    """A connection error carrying a Retry-After hint in an attribute."""

    def __init__(self, retry_after: object = None) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


class ResponseError(ConnectionError):
    """A connection error carrying a response with headers, as requests and httpx raise."""

    def __init__(self, headers: object) -> None:
        super().__init__("busy")
        self.response = SimpleNamespace(headers=headers)


class CaseInsensitiveHeaders(Mapping[str, str]):
    """Headers looked up in any letter case, like requests' and httpx's."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = {key.lower(): value for key, value in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._headers[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)


class RecordingBudget:
    """A budget that answers every retry request with *answer* and remembers each one."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[float] = []
        self.retries: list[float] = []

    def record_call(self, now: float) -> None:
        self.calls.append(now)

    def try_retry(self, now: float) -> bool:
        self.retries.append(now)
        return self.answer


# RetryPolicy validation -------------------------------------------------------------------------


@given(attempts=st.integers(max_value=0))
def test_attempts_below_one_raise_value_error(attempts: int) -> None:
    """attempts < 1 raises ValueError explaining that attempts counts the first call."""
    with pytest.raises(ValueError, match=r"attempts=.*at least 1"):
        policy(attempts=attempts)


@pytest.mark.parametrize("attempts", [1.5, 3.0, "3", True])
def test_attempts_that_are_not_whole_numbers_raise_type_error(attempts: object) -> None:
    """attempts that is not an int (a float, a string, a bool) raises TypeError."""
    with pytest.raises(TypeError, match="whole number"):
        policy(attempts=attempts)


@pytest.mark.parametrize("name", ["deadline", "max_wait"])
@settings(max_examples=30)
@given(value=bad_numbers())
def test_negative_nan_and_infinite_durations_raise_value_error(name: str, value: float) -> None:
    """A negative, NaN or infinite deadline or max_wait raises ValueError naming it."""
    with pytest.raises(ValueError, match=rf"^{name}="):
        policy(**{name: value})


@pytest.mark.parametrize("deadline", [0, 0.0, -0.0, timedelta(0), timedelta(seconds=-1)])
def test_a_deadline_that_is_not_positive_raises_value_error(deadline: object) -> None:
    """deadline <= 0 raises ValueError: a call must have some time to run."""
    with pytest.raises(ValueError, match="deadline="):
        policy(deadline=deadline)


@pytest.mark.parametrize("name", ["deadline", "max_wait"])
@pytest.mark.parametrize("value", ["5", True, [5]])
def test_non_number_durations_raise_type_error(name: str, value: object) -> None:
    """A deadline or max_wait that is not a number or timedelta raises TypeError."""
    with pytest.raises(TypeError, match=rf"^{name}=.*timedelta"):
        policy(**{name: value})


def test_a_negative_wait_is_refused_when_the_strategy_is_built() -> None:
    """A negative wait raises ValueError as soon as its strategy is built."""
    with pytest.raises(ValueError, match="negative"):
        policy(wait=wait.constant(-1))


@pytest.mark.parametrize("value", [1.0, "exponential", None])
def test_a_wait_that_is_not_a_strategy_raises_type_error(value: object) -> None:
    """wait= given something that is not callable raises TypeError naming the built-ins."""
    with pytest.raises(TypeError, match=r"not a wait strategy.*resilient\.wait"):
        policy(wait=value)


@pytest.mark.parametrize(
    "on",
    [ConnectionError("down"), (ValueError, KeyError("k")), [TimeoutError()]],
    ids=["instance", "instance-in-tuple", "instance-in-list"],
)
def test_an_exception_instance_in_on_raises_type_error_saying_to_pass_the_class(
    on: object,
) -> None:
    """on= given an exception instance raises TypeError saying to pass its class instead."""
    with pytest.raises(TypeError, match=r"exception instance .*pass its class instead: on=\w+"):
        policy(on=on)


@pytest.mark.parametrize("on", [int, str, object, (ValueError, int), [dict]])
def test_a_class_that_is_not_an_exception_raises_type_error(on: object) -> None:
    """on= given a class that is not an exception raises TypeError asking for exception types."""
    with pytest.raises(TypeError, match="is not an exception class"):
        policy(on=on)


@pytest.mark.parametrize(
    "on",
    [
        KeyboardInterrupt,
        asyncio.CancelledError,
        SystemExit,
        GeneratorExit,
        BaseException,
        (ConnectionError, KeyboardInterrupt),
    ],
)
def test_base_exceptions_can_never_be_retried(on: object) -> None:
    """on= naming cancellation, KeyboardInterrupt, SystemExit or GeneratorExit raises TypeError."""
    with pytest.raises(TypeError, match="can never be retried"):
        policy(on=on)


@pytest.mark.parametrize("on", [(), []])
def test_an_empty_on_raises_value_error(on: object) -> None:
    """on=() would retry nothing, so it raises ValueError asking for exception types."""
    with pytest.raises(ValueError, match="retries nothing"):
        policy(on=on)


@pytest.mark.parametrize("on", ["ConnectionError", 3, None, (ValueError, lambda exc: True)])
def test_on_that_is_neither_types_nor_a_predicate_raises_type_error(on: object) -> None:
    """on= given neither exception types nor one predicate raises TypeError showing both forms."""
    with pytest.raises(TypeError, match="neither exception types nor a predicate"):
        policy(on=on)


def test_unlimited_attempts_need_a_deadline() -> None:
    """attempts=None without a deadline would retry forever, so it raises ValueError."""
    with pytest.raises(ValueError, match="retry forever"):
        policy(attempts=None)
    assert policy(attempts=None, deadline=5).attempts is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("on_result", "not callable"), ("budget", 0.2), ("budget", "budget"), ("name", 42)],
)
def test_other_fields_of_the_wrong_type_raise_type_error(name: str, value: object) -> None:
    """on_result, budget and name of the wrong type raise TypeError naming the field."""
    with pytest.raises(TypeError, match=name):
        policy(**{name: value})


@given(
    deadline=st.timedeltas(min_value=timedelta(microseconds=1)),
    max_wait=st.timedeltas(timedelta(0)),
)
def test_timedeltas_are_normalised_to_float_seconds(
    deadline: timedelta, max_wait: timedelta
) -> None:
    """A deadline or max_wait given as a timedelta is kept as float seconds."""
    made = policy(deadline=deadline, max_wait=max_wait)
    assert made.deadline == deadline.total_seconds()
    assert made.max_wait == max_wait.total_seconds()
    assert type(made.deadline) is float
    assert type(made.max_wait) is float


def test_integer_durations_are_normalised_to_floats() -> None:
    """A deadline or max_wait given as an int is kept as float seconds."""
    made = policy(deadline=5, max_wait=2)
    assert (made.deadline, made.max_wait) == (5.0, 2.0)
    assert type(made.deadline) is float
    assert type(made.max_wait) is float


def test_evolve_validates_the_variant() -> None:
    """A variant derived with attrs.evolve is validated like a new policy."""
    base = policy(attempts=3)
    assert attrs.evolve(base, attempts=5).attempts == 5
    with pytest.raises(ValueError, match="attempts"):
        attrs.evolve(base, attempts=0)
    with pytest.raises(TypeError, match="pass its class"):
        attrs.evolve(base, on=ValueError("x"))


def test_a_policy_is_frozen() -> None:
    """A policy cannot be changed once built."""
    made = policy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.attempts = 10  # type: ignore[misc]


# matches ----------------------------------------------------------------------------------------

EXCEPTION_TYPES = [
    ConnectionError,
    ConnectionRefusedError,
    TimeoutError,
    OSError,
    ValueError,
    KeyError,
    LookupError,
    RuntimeError,
]


@given(
    on=st.lists(st.sampled_from(EXCEPTION_TYPES), min_size=1, max_size=4),
    raised=st.sampled_from(EXCEPTION_TYPES),
    form=st.sampled_from(["type", "tuple", "list"]),
)
def test_matches_types_like_except_does(
    on: list[type[Exception]], raised: type[Exception], form: str
) -> None:
    """A policy matches an exception exactly when it is an instance of a type in on=."""
    given_on = {"type": on[0], "tuple": tuple(on), "list": list(on)}[form]
    expected = {"type": on[0], "tuple": tuple(on), "list": tuple(on)}[form]
    error = raised("x")
    assert policy(on=given_on).matches(error) is isinstance(error, expected)


def test_a_list_is_kept_as_a_tuple() -> None:
    """on= given a list is stored as a tuple, so the policy stays immutable and hashable."""
    assert policy(on=[ValueError, KeyError]).on == (ValueError, KeyError)


@pytest.mark.parametrize(
    ("answer", "expected"), [(True, True), (False, False), (1, True), ("", False), (None, False)]
)
def test_matches_asks_a_predicate(answer: object, expected: bool) -> None:
    """With a predicate, matches returns the predicate's answer as a bool."""
    seen: list[Exception] = []

    def predicate(exc: Exception) -> object:
        seen.append(exc)
        return answer

    error = ValueError("x")
    assert policy(on=predicate).matches(error) is expected
    assert seen == [error]


# RetryRun: when it gives up ---------------------------------------------------------------------


def test_a_non_matching_error_gives_up_at_once_with_no_reason() -> None:
    """An error that on= does not name is not retried: no wait, reason None, no budget spent."""
    budget = RecordingBudget(answer=True)
    run = run_of(policy(budget=budget))
    assert run.after_error(ValueError("bad input"), 1.0, wall) is None
    assert run.reason is None
    assert run.attempt == 1
    assert budget.retries == []


@given(attempts=st.integers(min_value=1, max_value=30))
def test_the_run_gives_up_after_its_attempts(attempts: int) -> None:
    """A run allows attempts - 1 retries, then gives up with reason "attempts"."""
    run = run_of(policy(attempts=attempts, wait=wait.constant(0.5)))
    now = 0.0
    for retry in range(1, attempts):
        delay = run.after_error(ConnectionError(), now, wall)
        assert delay == 0.5
        assert run.attempt == retry + 1
        now += 1
    assert run.after_error(ConnectionError(), now, wall) is None
    assert run.reason == "attempts"
    assert run.attempt == attempts


def test_max_attempts_of_the_run_overrides_the_policy() -> None:
    """The attempts a run is given (testing mode's cap) win over the policy's."""
    run = RetryRun(policy(attempts=10), 0.0, 2)
    assert run.after_error(ConnectionError(), 0.0, wall) == 0.0
    assert run.after_error(ConnectionError(), 0.0, wall) is None
    assert run.reason == "attempts"


@given(
    deadline=seconds(100, min_value=0.001),
    pause=seconds(10),
    durations=st.lists(seconds(10), min_size=1, max_size=50),
    attempts=st.none() | st.integers(min_value=1, max_value=50),
    start=seconds(1e6),
)
def test_no_wait_ever_crosses_the_deadline(
    deadline: float, pause: float, durations: list[float], attempts: int | None, start: float
) -> None:
    """Every wait ends before the deadline; a run that cannot start in time says "deadline"."""
    run = run_of(policy(attempts=attempts, deadline=deadline, wait=wait.constant(pause)), start)
    now = start
    for took in durations:
        now += took
        delay = run.after_error(ConnectionError(), now, wall)
        if delay is None:
            break
        assert now + delay < start + deadline
        now += delay
    else:
        return
    if run.reason == "deadline":
        assert now + pause >= run.deadline_at
        assert attempts is None or run.attempt < attempts
    else:
        assert run.reason == "attempts"
        assert run.attempt == attempts


def test_unlimited_attempts_run_until_the_deadline() -> None:
    """With attempts=None a run keeps retrying until the next attempt would miss the deadline."""
    run = run_of(policy(attempts=None, deadline=100, wait=wait.constant(1)))
    for retry in range(99):
        assert run.after_error(ConnectionError(), float(retry), wall) == 1.0
    assert run.after_error(ConnectionError(), 99.0, wall) is None
    assert run.reason == "deadline"
    assert run.attempt == 100


def test_a_wait_that_would_end_exactly_at_the_deadline_gives_up() -> None:
    """A wait ending exactly at the deadline leaves no time to attempt, so the run gives up."""
    run = run_of(policy(deadline=2, wait=wait.constant(1)), start=10.0)
    assert run.after_error(ConnectionError(), 11.0, wall) is None
    assert run.reason == "deadline"


def test_a_refusing_budget_gives_up_with_reason_budget() -> None:
    """When the budget refuses the retry, the run gives up with reason "budget"."""
    budget = RecordingBudget(answer=False)
    run = run_of(policy(budget=budget, wait=wait.constant(2)))
    assert run.after_error(ConnectionError(), 3.5, wall) is None
    assert run.reason == "budget"
    assert budget.retries == [3.5]
    assert (run.attempt, run.previous) == (1, 0.0)


def test_an_allowing_budget_is_charged_once_per_retry() -> None:
    """Each retry the run makes spends exactly one budget token, at the decision's time."""
    budget = RecordingBudget(answer=True)
    run = run_of(policy(budget=budget, attempts=3))
    run.after_error(ConnectionError(), 1.0, wall)
    run.after_error(ConnectionError(), 2.0, wall)
    assert budget.retries == [1.0, 2.0]
    assert budget.calls == []  # the driver counts calls; the run only spends retries


@pytest.mark.parametrize(
    ("options", "now", "reason"),
    [
        ({"attempts": 1}, 0.0, "attempts"),
        ({"deadline": 1, "wait": wait.constant(2)}, 0.0, "deadline"),
        ({"deadline": 1, "attempts": None}, 1.0, "deadline"),
    ],
)
def test_no_budget_token_is_spent_when_giving_up_for_another_reason(
    options: dict[str, object], now: float, reason: str
) -> None:
    """A run that gives up for attempts or the deadline does not touch the budget."""
    budget = RecordingBudget(answer=True)
    run = run_of(policy(budget=budget, **options))
    assert run.after_error(ConnectionError(), now, wall) is None
    assert run.reason == reason
    assert budget.retries == []


def test_a_shared_retry_budget_limits_retries_across_runs() -> None:
    """Runs sharing a RetryBudget with room for one retry get one retry between them."""
    shared = policy(budget=RetryBudget(ratio=0, min_per_second=0.1, window=10))
    first, second = run_of(shared), run_of(shared)
    assert first.after_error(ConnectionError(), 1.0, wall) == 0.0
    assert second.after_error(ConnectionError(), 1.0, wall) is None
    assert second.reason == "budget"


def test_a_budget_token_is_kept_when_the_run_gives_up_for_attempts() -> None:
    """The budget's last token survives a run that gave up for attempts, for the next run."""
    budget = RetryBudget(ratio=0, min_per_second=0.1, window=10)
    spent = run_of(policy(budget=budget, attempts=1))
    assert spent.after_error(ConnectionError(), 1.0, wall) is None
    assert spent.reason == "attempts"
    assert run_of(policy(budget=budget)).after_error(ConnectionError(), 1.0, wall) == 0.0


# RetryRun: how long it waits --------------------------------------------------------------------


@given(
    strategy=seconds(100),
    hint=st.none() | seconds(100),
    max_wait=seconds(100),
    honour=st.booleans(),
)
def test_the_wait_is_the_strategys_raised_to_the_hint_and_capped_by_max_wait(
    strategy: float, hint: float | None, max_wait: float, honour: bool
) -> None:
    """The wait is max(strategy, Retry-After) when hints are honoured, then at most max_wait."""
    run = run_of(
        policy(wait=wait.constant(strategy), max_wait=max_wait, retry_after=honour, attempts=2)
    )
    raised = strategy if hint is None or not honour else max(strategy, hint)
    assert run.after_error(HintedError(hint), 0.0, wall) == min(raised, max_wait)


def test_an_http_date_hint_is_read_against_the_wall_clock() -> None:
    """A Retry-After HTTP-date asks for the seconds from the wall clock's now until it."""
    run = run_of(policy())
    delay = run.after_error(HintedError(DATE), 5.0, lambda: DATE_TIMESTAMP - 30)
    assert delay == 30.0


def test_a_hint_past_the_deadline_gives_up() -> None:
    """A Retry-After hint that would end past the deadline makes the run give up now."""
    run = run_of(policy(deadline=10))
    assert run.after_error(HintedError(20), 1.0, wall) is None
    assert run.reason == "deadline"


@pytest.mark.parametrize("garbage", [-1.0, -math.inf, math.nan])
def test_a_custom_strategy_returning_garbage_means_no_wait(garbage: float) -> None:
    """A custom wait returning a negative number or NaN gives a wait of zero."""
    run = run_of(policy(wait=lambda attempt, previous: garbage))
    assert run.after_error(ConnectionError(), 0.0, wall) == 0.0
    assert run.previous == 0.0


def test_a_custom_strategy_returning_infinity_waits_max_wait() -> None:
    """A custom wait returning infinity is capped to max_wait."""
    run = run_of(policy(wait=lambda attempt, previous: math.inf, max_wait=7))
    assert run.after_error(ConnectionError(), 0.0, wall) == 7.0


def test_attempt_and_previous_progress_with_each_retry() -> None:
    """The strategy sees attempts 1, 2, 3... and the wait actually chosen before each one."""
    seen: list[tuple[int, float]] = []

    def recording(attempt: int, previous: float) -> float:
        seen.append((attempt, previous))
        return attempt * 4.0

    run = run_of(policy(wait=recording, attempts=5, max_wait=10))
    delays = [run.after_error(ConnectionError(), float(now), wall) for now in range(3)]
    assert delays == [4.0, 8.0, 10.0]  # the third is capped by max_wait
    assert seen == [(1, 0.0), (2, 4.0), (3, 8.0)]
    assert (run.attempt, run.previous) == (4, 10.0)


def test_previous_is_the_wait_after_the_hint() -> None:
    """previous is the wait the run chose, Retry-After included, not the strategy's answer."""
    seen: list[float] = []

    def recording(attempt: int, previous: float) -> float:
        seen.append(previous)
        return 1.0

    run = run_of(policy(wait=recording))
    run.after_error(HintedError(6), 0.0, wall)
    run.after_error(ConnectionError(), 10.0, wall)
    assert seen == [0.0, 6.0]


# RetryRun: results ------------------------------------------------------------------------------


def test_results_are_accepted_without_on_result() -> None:
    """With no on_result, any result ends the run: no wait, no reason."""
    run = run_of(policy())
    assert run.after_result(None, 0.0) is None
    assert run.reason is None


def test_on_result_retries_the_results_it_rejects_until_attempts_run_out() -> None:
    """on_result sees each result; a true answer retries, and after the last attempt gives up."""
    seen: list[object] = []

    def pending(result: object) -> bool:
        seen.append(result)
        return result == "pending"

    run = run_of(policy(on_result=pending, attempts=3, wait=wait.constant(1)))
    assert run.after_result("pending", 0.0) == 1.0
    assert run.after_result("done", 2.0) is None
    assert run.reason is None
    assert run.after_result("pending", 2.0) == 1.0
    assert run.after_result("pending", 4.0) is None
    assert run.reason == "attempts"
    assert seen == ["pending", "done", "pending", "pending"]


def test_on_result_respects_the_deadline_and_the_budget() -> None:
    """A rejected result is retried under the same deadline and budget rules as an error."""
    late = run_of(policy(on_result=bool, deadline=1, wait=wait.constant(2)))
    assert late.after_result("rejected", 0.0) is None
    assert late.reason == "deadline"
    refused = run_of(policy(on_result=bool, budget=RecordingBudget(answer=False)))
    assert refused.after_result("rejected", 0.0) is None
    assert refused.reason == "budget"


# RetryRun: the note -----------------------------------------------------------------------------


def _ended(reason: str) -> RetryRun:
    if reason == "attempts":
        run = run_of(policy(attempts=3), start=10.0)
        for _ in range(3):
            run.after_error(ConnectionError(), 11.0, wall)
    elif reason == "deadline":
        run = run_of(policy(deadline=1, wait=wait.constant(5)), start=10.0)
        run.after_error(ConnectionError(), 10.5, wall)
    elif reason == "budget":
        run = run_of(policy(budget=RecordingBudget(answer=False)), start=10.0)
        run.after_error(ConnectionError(), 11.0, wall)
    else:
        run = run_of(policy(), start=10.0)
        run.after_error(ValueError(), 11.0, wall)
    assert run.reason == (None if reason == "none" else reason)
    return run


@pytest.mark.parametrize(
    ("reason", "note"),
    [
        (
            "attempts",
            "resilient.retry(fetch): gave up after 3 attempts over 1500 ms: attempts exhausted",
        ),
        (
            "deadline",
            "resilient.retry(fetch): gave up after 1 attempt over 1500 ms: the next attempt "
            "could not start before the deadline",
        ),
        (
            "budget",
            "resilient.retry(fetch): gave up after 1 attempt over 1500 ms: "
            "the retry budget is spent",
        ),
        (
            "none",
            "resilient.retry(fetch): gave up after 1 attempt over 1500 ms: "
            "this error is not retried",
        ),
    ],
)
def test_the_note_says_how_many_attempts_over_how_long_and_why(reason: str, note: str) -> None:
    """The note names the function, counts the attempts, gives the time taken and the reason."""
    assert _ended(reason).note(11.5) == note


@given(attempts=st.integers(min_value=2, max_value=40), elapsed=seconds(1e5))
def test_the_note_counts_every_attempt(attempts: int, elapsed: float) -> None:
    """The note's count of attempts is the number of attempts made, its time the time taken."""
    run = run_of(policy(attempts=attempts), name="f")
    for _ in range(attempts):
        run.after_error(ConnectionError(), 0.0, wall)
    assert run.note(elapsed).endswith(
        f"gave up after {attempts} attempts over {int(elapsed * 1000)} ms: attempts exhausted"
    )


# parse_retry_after ------------------------------------------------------------------------------


@given(case=valid_retry_after())
def test_valid_values_give_the_seconds_they_ask_for(case: RetryAfterCase) -> None:
    """Seconds, timedeltas, delta-seconds text and HTTP-dates give the wait they stand for."""
    assert parse_retry_after(case.value, wall) == case.seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (120, 120.0),
        (0, 0.0),
        (1.5, 1.5),
        (timedelta(seconds=90), 90.0),
        ("120", 120.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        (b"7", 7.0),
    ],
)
def test_seconds_in_any_form_are_read(value: object, expected: float) -> None:
    """Numbers, timedeltas, and delta-seconds as text or bytes give that many seconds."""
    seconds_asked = parse_retry_after(value, wall)
    assert seconds_asked == expected
    assert type(seconds_asked) is float


def test_a_future_http_date_gives_the_seconds_until_it() -> None:
    """An HTTP-date in the future asks to wait until then by the given wall clock."""
    assert parse_retry_after(DATE, lambda: DATE_TIMESTAMP - 120) == 120.0


def test_a_past_http_date_means_no_wait() -> None:
    """An HTTP-date in the past asks for no wait at all."""
    assert parse_retry_after(DATE, lambda: DATE_TIMESTAMP + 3600) == 0.0


def test_an_http_date_in_another_zone_is_read_in_that_zone() -> None:
    """An HTTP-date with a numeric zone offset is converted, not read as GMT."""
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", lambda: DATE_TIMESTAMP) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", lambda: DATE_TIMESTAMP - 5) == 5.0


@given(value=garbage_retry_after())
def test_garbage_is_ignored(value: object) -> None:
    """Negative, NaN, infinite, boolean, zoneless and unreadable values give None."""
    assert parse_retry_after(value, wall) is None


DATE_ALPHABET = "0123456789 :,.+-GMTUESADNOVIJLYFBRPCHWacdeghilnoprtuvy\t"


@settings(max_examples=300, deadline=None)
@given(value=st.text() | st.text(alphabet=DATE_ALPHABET) | st.binary())
def test_random_text_never_raises(value: str | bytes) -> None:
    """Any text or bytes gives None or a finite number of seconds >= 0, never an exception."""
    result = parse_retry_after(value, wall)
    assert result is None or (math.isfinite(result) and result >= 0)


@settings(deadline=None)
@given(
    day=st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", ""]),
    date=st.integers(min_value=-5, max_value=40),
    month=st.sampled_from(["Jan", "Feb", "Oct", "Dec", "Foo"]),
    year=st.integers(min_value=-1, max_value=100_000),
    clock=st.tuples(st.integers(-1, 99), st.integers(-1, 99), st.integers(-1, 99)),
    zone=st.sampled_from(["GMT", "UTC", "+0000", "-2359", "+9999", "EST", "", "-0000"]),
)
def test_date_like_text_never_raises(
    day: str, date: int, month: str, year: int, clock: tuple[int, int, int], zone: str
) -> None:
    """Text shaped like an HTTP-date with any numbers in it never raises."""
    text = f"{day}, {date} {month} {year} {clock[0]:02}:{clock[1]:02}:{clock[2]:02} {zone}"
    result = parse_retry_after(text, wall)
    assert result is None or (math.isfinite(result) and result >= 0)


# retry_after_hint -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5.0), (2.5, 2.5), ("30", 30.0), (timedelta(minutes=1), 60.0), (DATE, 120.0)],
)
def test_the_hint_is_read_from_a_retry_after_attribute(value: object, expected: float) -> None:
    """exc.retry_after (seconds, timedelta, header text or HTTP-date) is the hint."""
    assert retry_after_hint(HintedError(value), lambda: DATE_TIMESTAMP - 120) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "7"},
        {"retry-after": "7"},
        CaseInsensitiveHeaders({"RETRY-AFTER": "7"}),
        CaseInsensitiveHeaders({"Retry-after": "7"}),
        {"Content-Type": "text/plain", "Retry-After": b"7"},
    ],
    ids=["canonical", "lower", "case-insensitive-upper", "case-insensitive-mixed", "bytes"],
)
def test_the_hint_is_read_from_response_headers(headers: Mapping[str, object]) -> None:
    """A Retry-After header in exc.response.headers is the hint, in its usual spellings."""
    assert retry_after_hint(ResponseError(headers), wall) == 7.0


def test_the_attribute_wins_over_the_headers() -> None:
    """An exception's own retry_after is read before its response's headers."""
    error = ResponseError({"Retry-After": "7"})
    error.retry_after = 3  # type: ignore[attr-defined]
    assert retry_after_hint(error, wall) == 3.0


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError(),
        HintedError(None),
        HintedError("soon"),
        HintedError(-5),
        ResponseError({}),
        ResponseError({"Retry-After": "tomorrow"}),
        ResponseError(None),
        ResponseError([("Retry-After", "7")]),
    ],
    ids=[
        "nothing",
        "attribute-none",
        "attribute-garbage",
        "attribute-negative",
        "no-header",
        "header-garbage",
        "headers-none",
        "headers-not-a-mapping",
    ],
)
def test_no_hint_or_an_unreadable_one_is_none(error: Exception) -> None:
    """An exception without a readable hint has none."""
    assert retry_after_hint(error, wall) is None


def test_a_response_of_none_has_no_hint() -> None:
    """An exception whose response is None (requests' connection errors) has no hint."""
    error = ConnectionError()
    error.response = None  # type: ignore[attr-defined]
    assert retry_after_hint(error, wall) is None


def _raising(message: str) -> property:
    def get(self: object) -> object:
        raise RuntimeError(message)

    return property(get)


class BrokenHint(ConnectionError):
    """An exception whose retry_after property raises."""

    retry_after = _raising("broken retry_after")


class BrokenResponse(ConnectionError):
    """An exception whose response property raises."""

    response = _raising("broken response")


class BrokenHeaders:
    """Headers whose lookups raise."""

    def get(self, key: str) -> object:
        raise RuntimeError("broken headers")


class BrokenWallError(HintedError):
    """An HTTP-date hint on an exception, read with a wall clock that raises."""


def _broken_wall() -> float:
    raise RuntimeError("no wall clock")


@pytest.mark.parametrize(
    ("error", "clock"),
    [
        (BrokenHint(), wall),
        (BrokenResponse(), wall),
        (ResponseError(BrokenHeaders()), wall),
        (BrokenWallError(DATE), _broken_wall),
    ],
    ids=["retry_after", "response", "headers", "wall-clock"],
)
def test_a_hint_that_raises_is_ignored(error: Exception, clock: Callable[[], float]) -> None:
    """A hint whose reading raises is no hint: the error never propagates."""
    assert retry_after_hint(error, clock) is None


def test_a_run_with_a_broken_hint_still_retries() -> None:
    """A broken Retry-After does not stop the run from retrying on its own schedule."""
    run = run_of(policy(wait=wait.constant(2)))
    assert run.after_error(BrokenHint(), 0.0, wall) == 2.0
