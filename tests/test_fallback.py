"""`@fallback`: a value or a handler's answer instead of the exceptions `on=` names."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from cache_support import EventLog, run
from hypothesis import given
from hypothesis import strategies as st

from resilient import FallbackPolicy, breaker, fallback, retry, wait
from resilient._core.fallback import UNSET
from resilient._decorate import layers_of
from resilient.events import FallbackUsed, RetriesExhausted
from resilient.exceptions import CircuitOpenError
from resilient.testing import FakeClock


class Refused(ConnectionRefusedError):
    """An exception from outside the builtins, named with its module in events."""


def raising(error: BaseException) -> Callable[..., Any]:
    """Return a function that raises *error* whatever it is given."""

    def call(*args: object, **kwargs: object) -> Any:
        raise error

    return call


def outcome(call: Callable[[], Any]) -> Any:
    """Return what *call* returns, or the BaseException it raises."""
    try:
        return call()
    except BaseException as exc:  # the point is to see whatever passes through
        return exc


async def aoutcome(call: Callable[[], Any]) -> Any:
    """Return what the coroutine *call* makes returns, or the BaseException it raises."""
    try:
        return await call()
    except BaseException as exc:  # the point is to see whatever passes through
        return exc


# -- answers ---------------------------------------------------------------------------------


def test_a_matching_exception_is_answered_with_the_value() -> None:
    """The call returns the very value object given, and a successful call its own result."""
    default: list[str] = []
    calls: list[int] = []

    @fallback(on=ConnectionError, value=default)
    def recommendations(user_id: int) -> list[str]:
        calls.append(user_id)
        if user_id < 0:
            raise ConnectionError("recommender down")
        return [f"item-{user_id}"]

    assert recommendations(1) == ["item-1"]
    assert recommendations(-1) is default
    assert calls == [1, -1]


def test_value_none_is_a_value() -> None:
    """value=None is an answer, told apart from no value by the UNSET sentinel."""

    @fallback(on=KeyError, value=None)
    def lookup() -> int | None:
        raise KeyError("k")

    assert lookup() is None
    assert FallbackPolicy(on=KeyError, value=None).value is None
    assert FallbackPolicy(on=KeyError, handler=repr).value is UNSET
    assert repr(UNSET) == "UNSET"


def test_a_handler_gets_the_exception_and_its_result_is_returned() -> None:
    """handler= is called with the very exception raised; what it returns is the answer."""
    error = TimeoutError("slow")
    seen: list[BaseException] = []

    def answer(exc: Exception) -> str:
        seen.append(exc)
        return f"answered {type(exc).__name__}"

    decorated = fallback(on=(ConnectionError, TimeoutError), handler=answer)(raising(error))
    assert decorated() == "answered TimeoutError"
    assert seen == [error]
    assert seen[0] is error


def test_async_functions_get_the_value_or_the_awaited_handler_result() -> None:
    """For async functions a value is returned as is, an async handler awaited, a sync one not."""

    async def later(exc: Exception) -> str:
        await asyncio.sleep(0)
        return f"later {exc}"

    @fallback(on=ConnectionError, value="cached")
    async def with_value() -> str:
        raise ConnectionError("down")

    @fallback(on=ConnectionError, handler=later)
    async def with_async_handler() -> str:
        raise ConnectionError("down")

    @fallback(on=ConnectionError, handler=lambda exc: f"now {exc}")
    async def with_sync_handler() -> str:
        raise ConnectionError("down")

    @fallback(on=ConnectionError, value="cached")
    async def fine(x: int) -> str:
        await asyncio.sleep(0)
        return f"fine {x}"

    assert inspect.iscoroutinefunction(with_value)
    assert run(with_value()) == "cached"
    assert run(with_async_handler()) == "later down"
    assert run(with_sync_handler()) == "now down"
    assert run(fine(2)) == "fine 2"


def test_methods_classmethods_and_staticmethods_are_answered() -> None:
    """Every kind of method, sync and async, gets its fallback and keeps its binding."""

    class Client:
        def __init__(self, base: str) -> None:
            self.base = base

        @fallback(on=ConnectionError, handler=lambda exc: "offline")
        def get(self, path: str) -> str:
            if path == "/down":
                raise ConnectionError
            return self.base + path

        @fallback(on=ConnectionError, value="offline")
        async def aget(self, path: str) -> str:
            if path == "/down":
                raise ConnectionError
            return self.base + path

        @classmethod
        @fallback(on=ValueError, value=None)
        def parse(cls, text: str) -> Client | None:
            if not text:
                raise ValueError("empty")
            return cls(text)

        @staticmethod
        @fallback(on=ZeroDivisionError, value=0.0)
        def ratio(a: float, b: float) -> float:
            return a / b

    client = Client("https://x")
    assert client.get("/a") == "https://x/a"
    assert client.get("/down") == "offline"
    assert run(client.aget("/a")) == "https://x/a"
    assert run(client.aget("/down")) == "offline"
    parsed = Client.parse("https://y")
    assert parsed is not None
    assert parsed.base == "https://y"
    assert Client.parse("") is None
    assert client.parse("") is None
    assert Client.ratio(1, 0) == 0.0
    assert client.ratio(1, 2) == 0.5


def test_the_signature_and_the_function_are_kept() -> None:
    """inspect sees the original signature; __wrapped__ is the function written."""

    def charge(order_id: str, *, cents: int = 0) -> bool:
        return True

    decorated = fallback(on=ConnectionError, value=False)(charge)
    assert inspect.signature(decorated) == inspect.signature(charge)
    assert decorated.__wrapped__ is charge  # type: ignore[attr-defined]
    assert decorated.__name__ == "charge"


# -- which exceptions ------------------------------------------------------------------------

_HIERARCHY = [OSError, ConnectionError, ConnectionRefusedError, Refused, TimeoutError, KeyError]


@given(
    on=st.lists(st.sampled_from(_HIERARCHY), min_size=1, max_size=3, unique=True),
    raised=st.sampled_from(_HIERARCHY),
    value=st.one_of(st.none(), st.integers(), st.text(), st.booleans()),
)
def test_exactly_the_exceptions_on_names_are_answered(
    on: list[type[Exception]], raised: type[Exception], value: object
) -> None:
    """The call returns the value iff the exception is an instance of on=; else it propagates."""
    error = raised("boom")
    result = outcome(fallback(on=tuple(on), value=value)(raising(error)))
    if issubclass(raised, tuple(on)):
        assert result is value
    else:
        assert result is error


def test_a_predicate_decides_which_exceptions_are_answered() -> None:
    """on= may be a predicate taking the exception; an exception it refuses propagates."""
    transient = OSError(503, "unavailable")
    permanent = OSError(404, "not found")
    decorated = fallback(on=lambda exc: getattr(exc, "errno", None) == 503, value="later")
    assert decorated(raising(transient))() == "later"
    assert outcome(decorated(raising(permanent))) is permanent


def test_an_exception_not_named_propagates_unchanged() -> None:
    """A non-matching exception is the very object raised, with no note and its own traceback."""

    def parse() -> int:
        return int("x")

    decorated = fallback(on=ConnectionError, value=0)(parse)
    with pytest.raises(ValueError, match="invalid literal") as info:
        decorated()
    assert not hasattr(info.value, "__notes__")
    assert info.traceback[-1].name == "parse"

    async def aparse() -> int:
        return int("x")

    with pytest.raises(ValueError, match="invalid literal"):
        run(fallback(on=ConnectionError, value=0)(aparse)())


def test_a_predicate_that_raises_is_raised_from_the_exception_it_judged() -> None:
    """A bug in on= surfaces, chained to the exception it was judging, which is not answered."""
    error = ConnectionError("down")

    def judge(exc: Exception) -> bool:
        raise RuntimeError("bug in the predicate")

    with pytest.raises(RuntimeError, match="bug in the predicate") as info:
        fallback(on=judge, value=None)(raising(error))()
    assert info.value.__cause__ is error


def test_a_handler_that_raises_propagates_with_the_original_as_context() -> None:
    """A handler's exception propagates, with the answered one as its __context__."""
    error = ConnectionError("down")

    def handler(exc: Exception) -> str:
        raise LookupError("no cached copy either")

    with pytest.raises(LookupError, match="no cached copy") as info:
        fallback(on=ConnectionError, handler=handler)(raising(error))()
    assert info.value.__context__ is error

    async def ahandler(exc: Exception) -> str:
        raise LookupError("no cached copy either")

    @fallback(on=ConnectionError, handler=ahandler)
    async def call() -> str:
        raise error

    raised = run(aoutcome(call))
    assert isinstance(raised, LookupError)
    assert raised.__context__ is error


def test_a_handler_may_re_raise_the_exception_it_was_given() -> None:
    """A handler that raises its argument lets the original propagate as it was."""
    error = ConnectionError("down")

    def handler(exc: Exception) -> str:
        raise exc

    assert outcome(fallback(on=ConnectionError, handler=handler)(raising(error))) is error
    assert error.__cause__ is None


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3), GeneratorExit()],
    ids=lambda error: type(error).__name__,
)
def test_base_exceptions_are_never_answered(error: BaseException, log: EventLog) -> None:
    """Cancellation, KeyboardInterrupt, SystemExit, GeneratorExit pass through sync and async."""
    judged: list[BaseException] = []

    def everything(exc: Exception) -> bool:
        judged.append(exc)
        return True

    assert outcome(fallback(on=Exception, value="no")(raising(error))) is error
    assert outcome(fallback(on=everything, value="no")(raising(error))) is error

    @fallback(on=everything, handler=lambda exc: "no")
    async def call() -> str:
        raise error

    assert run(aoutcome(call)) is error
    assert judged == []
    assert log.events == []


def test_a_cancelled_task_stays_cancelled() -> None:
    """Cancelling a task awaiting inside the function cancels it; the fallback is not used."""
    started = asyncio.Event()

    @fallback(on=lambda exc: True, value="answered")
    async def slow() -> str:
        started.set()
        await asyncio.sleep(60)
        return "done"

    async def main() -> Any:
        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        return (await asyncio.gather(task, return_exceptions=True))[0]

    assert isinstance(run(main()), asyncio.CancelledError)


# -- stacking --------------------------------------------------------------------------------


def test_an_open_breakers_refusal_is_answered(log: EventLog) -> None:
    """Over an open breaker, the fallback answers CircuitOpenError without running the function."""
    runs: list[str] = []

    @fallback(on=(ConnectionError, CircuitOpenError), handler=lambda exc: type(exc).__name__)
    @breaker("fallback-prices", consecutive_failures=1, open_for=30)
    def price(sku: str) -> str:
        runs.append(sku)
        raise ConnectionError("prices down")

    assert price("A-1") == "ConnectionError"  # the failure that trips the breaker
    assert price("A-1") == "CircuitOpenError"  # refused, and answered
    assert runs == ["A-1"]
    assert len(layers_of(price)) == 2  # one wrapper for both
    assert [event.error_type for event in log.of(FallbackUsed)] == [
        "ConnectionError",
        "resilient.exceptions.CircuitOpenError",
    ]


def test_an_open_breakers_refusal_is_answered_async() -> None:
    """The same for an async function: the refusal reaches the fallback as CircuitOpenError."""

    @fallback(on=CircuitOpenError, value="stale")
    @breaker("fallback-aprices", consecutive_failures=1, open_for=30)
    async def price(sku: str) -> str:
        raise ConnectionError("prices down")

    with pytest.raises(ConnectionError):
        run(price("A-1"))
    assert run(price("A-1")) == "stale"


def test_retries_run_out_before_the_fallback_answers(log: EventLog) -> None:
    """Over @retry, every attempt is made first; the fallback answers the last exception."""
    attempts: list[int] = []

    @fallback(on=ConnectionError, value="default")
    @retry(on=ConnectionError, attempts=3, wait=wait.none())
    def fetch() -> str:
        attempts.append(1)
        raise ConnectionError("down")

    assert fetch() == "default"
    assert len(attempts) == 3
    kinds = [type(event) for event in log.events]
    assert kinds.index(RetriesExhausted) < kinds.index(FallbackUsed)

    @fallback(on=ConnectionError, value="default")
    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    async def afetch() -> str:
        attempts.append(2)
        raise ConnectionError("down")

    assert run(afetch()) == "default"
    assert attempts.count(2) == 2


def test_the_success_path_costs_one_frame() -> None:
    """Stacked over @retry, a call that succeeds runs one Python frame more than without it."""

    def depth() -> int:
        frame: FrameType | None = sys._getframe(1)
        count = 0
        while frame is not None:
            frame, count = frame.f_back, count + 1
        return count

    retried = retry(on=ConnectionError)(depth)
    answered = fallback(on=ConnectionError, value=0)(retry(on=ConnectionError)(depth))
    assert answered() == retried() + 1

    async def adepth() -> int:
        return depth()

    aretried = retry(on=ConnectionError)(adepth)
    aanswered = fallback(on=ConnectionError, value=0)(retry(on=ConnectionError)(adepth))
    assert run(aanswered()) == run(aretried()) + 1


# -- events ----------------------------------------------------------------------------------


def test_an_answer_is_reported_with_the_error_type(log: EventLog, fake_clock: FakeClock) -> None:
    """fallback.used names the policy and the exception type; nothing else is reported."""
    fake_clock.advance(5)
    fallback(on=OSError, value=None, name="stock")(raising(Refused()))()
    fallback(on=OSError, value=None)(raising(TimeoutError()))()
    first, second = log.of(FallbackUsed)
    assert first == FallbackUsed(policy="stock", time=5.0, error_type="test_fallback.Refused")
    assert second.error_type == "TimeoutError"
    assert second.policy.endswith("raising.<locals>.call")
    assert first.kind == "fallback.used"
    assert first.severity == "warning"
    assert first.attributes() == {"policy": "stock", "error_type": "test_fallback.Refused"}
    assert len(log.events) == 2


def test_no_event_without_an_answer(log: EventLog) -> None:
    """Success and exceptions that are not answered report nothing."""
    fallback(on=KeyError, value=None)(lambda: 1)()
    outcome(fallback(on=KeyError, value=None)(raising(ValueError())))
    assert log.events == []


def test_a_handler_that_raises_is_reported_too(log: EventLog) -> None:
    """The event is reported when the fallback is chosen, before its handler runs."""
    outcome(fallback(on=KeyError, handler=raising(LookupError()))(raising(KeyError())))
    assert [event.error_type for event in log.of(FallbackUsed)] == ["KeyError"]


# -- policies and bad settings ---------------------------------------------------------------


def test_a_policy_can_be_given_and_evolved() -> None:
    """fallback(policy, **options) evolves it; one answer given replaces the policy's other."""
    policy = FallbackPolicy(on=KeyError, value="from value", name="lookups")
    assert fallback(policy)(raising(KeyError()))() == "from value"
    by_handler = fallback(policy, handler=lambda exc: "from handler")
    assert by_handler(raising(KeyError()))() == "from handler"
    by_value = fallback(FallbackPolicy(on=KeyError, handler=repr), value="from value")
    assert by_value(raising(KeyError()))() == "from value"
    assert outcome(fallback(policy, on=IndexError)(raising(KeyError()))).__class__ is KeyError
    assert policy.matches(KeyError())
    assert not policy.matches(IndexError())


async def _async_handler(exc: Exception) -> str:
    return "async"


def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: fallback(value=None), TypeError, r"needs on=: .*@fallback\(on=ConnectionError"),  # type: ignore[call-overload]
        (lambda: fallback(on=KeyError), TypeError, "needs value= or handler="),  # type: ignore[call-overload]
        (
            lambda: fallback(on=KeyError, value=1, handler=repr),  # type: ignore[call-overload]
            TypeError,
            "give value= or handler=, not both",
        ),
        (
            lambda: fallback(on=KeyboardInterrupt, value=None),  # type: ignore[arg-type]
            TypeError,
            "on=KeyboardInterrupt can never be answered by a fallback",
        ),
        (
            lambda: fallback(on=asyncio.CancelledError, value=None),  # type: ignore[arg-type]
            TypeError,
            "on=CancelledError can never be answered",
        ),
        (
            lambda: fallback(on=(ConnectionError, SystemExit), value=None),  # type: ignore[arg-type]
            TypeError,
            "on=SystemExit can never be answered",
        ),
        (
            lambda: fallback(on=ConnectionError(), value=None),  # type: ignore[call-overload]
            TypeError,
            "pass its class instead: on=ConnectionError",
        ),
        (lambda: fallback(on=(), value=None), ValueError, "on=\\(\\) answers nothing"),
        (lambda: fallback(on="KeyError", value=None), TypeError, "neither exception types"),  # type: ignore[call-overload]
        (
            lambda: fallback(on=KeyError, handler="[]"),  # type: ignore[call-overload]
            TypeError,
            "handler='\\[\\]' must be a callable .* write value='\\[\\]'",
        ),
        (lambda: fallback(on=KeyError, valu=1), TypeError, "unknown keyword 'valu'"),  # type: ignore[call-overload]
        (lambda: fallback(on=KeyError, value=1, name=3), TypeError, "'name' must be"),  # type: ignore[call-overload]
        (
            lambda: fallback(ConnectionError, value=None),  # type: ignore[call-overload]
            TypeError,
            r"takes a FallbackPolicy .*: write @fallback\(on=ConnectionError, value=None\)",
        ),
        (
            lambda: fallback(on=KeyError, handler=_async_handler)(lambda: 1),
            TypeError,
            "cannot await the async handler '_async_handler'",
        ),
        (
            lambda: fallback(on=KeyError, value=None)(_generator),
            TypeError,
            "cannot decorate the generator function",
        ),
    ],
)
def test_bad_settings_fail_at_decoration(make: Any, error: type[Exception], message: str) -> None:
    """Nonsense settings raise at once, saying what to write instead."""
    with pytest.raises(error, match=message):
        make()
