"""Hypothesis strategies shared by the test suite.

Durations, attempt numbers, every built-in wait strategy (alone and nested in the combinators),
and Retry-After values, valid and garbage. Strategies that build something whose exact value is
random also say what it is allowed to be (see `WaitCase`), so tests check bounds, not luck.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import strategies as st

from resilient import wait
from resilient.typing import Wait

__all__ = [
    "MAX_SECONDS",
    "NOW",
    "RetryAfterCase",
    "WaitCase",
    "attempts",
    "bad_numbers",
    "durations",
    "garbage_retry_after",
    "previous_waits",
    "random_seeds",
    "seconds",
    "seconds_of",
    "timedeltas",
    "valid_retry_after",
    "wait_cases",
    "waits",
]

# The longest duration the strategies draw: about eleven days, far beyond any sensible wait.
MAX_SECONDS = 1e6

# A fixed wall-clock time (2015-10-21 07:00:00 UTC) to read HTTP-dates against.
NOW = 1445410800.0


def seconds(max_value: float = MAX_SECONDS, min_value: float = 0.0) -> st.SearchStrategy[float]:
    """Finite float seconds in [min_value, max_value], zero and tiny values included."""
    return st.floats(
        min_value=min_value,
        max_value=max_value,
        allow_nan=False,
        allow_infinity=False,
        # subnormal halves round, which no duration a user means is affected by
        allow_subnormal=False,
    )


def timedeltas(max_value: float = MAX_SECONDS) -> st.SearchStrategy[timedelta]:
    """Non-negative timedeltas up to max_value seconds."""
    return st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=max_value))


def durations(max_value: float = MAX_SECONDS) -> st.SearchStrategy[float | int | timedelta]:
    """Anything a user may give as a duration: float or int seconds, or a timedelta."""
    return st.one_of(
        seconds(max_value),
        st.integers(min_value=0, max_value=int(max_value)),
        timedeltas(max_value),
    )


def seconds_of(value: float | timedelta) -> float:
    """Return the float seconds a duration stands for, as the library normalises it."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def bad_numbers() -> st.SearchStrategy[float]:
    """Numbers no duration may be: negative, NaN or infinite."""
    return st.one_of(
        st.floats(max_value=-1e-300, allow_infinity=False, allow_nan=False),
        st.just(math.nan),
        st.just(math.inf),
        st.just(-math.inf),
        st.integers(max_value=-1),
    )


def attempts() -> st.SearchStrategy[int]:
    """Attempt numbers (1-based): small ones, 10,000, a million and far beyond."""
    return st.one_of(
        st.integers(min_value=1, max_value=10_000),
        st.integers(min_value=10_001, max_value=10**7),
        st.sampled_from([1, 2, 10_000, 1_000_000, 2**31, 2**53, 2**63]),
    )


def random_seeds() -> st.SearchStrategy[object]:
    """A seed for the random module, varied per example.

    Hypothesis otherwise reseeds `random` identically for every example, so a jitter would make
    the same draws each time; ask for this in any test whose subject draws random numbers.
    """
    return st.random_module()


def previous_waits() -> st.SearchStrategy[float]:
    """The wait chosen after the attempt before, as a driver passes it to a strategy."""
    return seconds()


# Wait strategies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitCase:
    """A built wait strategy with the bounds its expression implies for each attempt.

    `low(attempt)` and `high(attempt)` hold for every random draw and every `previous`.
    """

    wait: Wait
    low: Callable[[int], float]
    high: Callable[[int], float]

    def __repr__(self) -> str:
        return repr(self.wait)


def _fixed(strategy: Wait) -> WaitCase:
    # a deterministic leaf bounds itself; its own formula is tested on its own
    def value(attempt: int) -> float:
        return strategy(attempt, 0.0)

    return WaitCase(strategy, value, value)


@st.composite
def _linear(draw: st.DrawFn) -> Wait:
    cap = draw(st.none() | durations())
    return wait.linear(start=draw(durations()), step=draw(durations()), max=cap)


@st.composite
def _exponential(draw: st.DrawFn) -> Wait:
    multiplier = draw(
        st.one_of(
            st.floats(min_value=1, max_value=10),
            st.integers(min_value=1, max_value=10),
            st.floats(min_value=1, max_value=1e300),
        )
    )
    return wait.exponential(initial=draw(durations()), multiplier=multiplier, max=draw(durations()))


@st.composite
def _decorrelated(draw: st.DrawFn) -> WaitCase:
    first = draw(seconds())
    cap = draw(seconds(min_value=first))
    strategy = wait.decorrelated_jitter(initial=first, max=cap)
    return WaitCase(strategy, lambda attempt: first, lambda attempt: cap)


def _leaves() -> st.SearchStrategy[WaitCase]:
    return st.one_of(
        st.just(wait.none()).map(_fixed),
        durations().map(wait.constant).map(_fixed),
        _linear().map(_fixed),
        _exponential().map(_fixed),
        _decorrelated(),
    )


def _full_jitter(case: WaitCase) -> WaitCase:
    return WaitCase(wait.full_jitter(case.wait), lambda attempt: 0.0, case.high)


def _equal_jitter(case: WaitCase) -> WaitCase:
    return WaitCase(wait.equal_jitter(case.wait), lambda attempt: case.low(attempt) / 2, case.high)


def _add(cases: list[WaitCase]) -> WaitCase:
    return WaitCase(
        wait.add(*(case.wait for case in cases)),
        lambda attempt: sum(case.low(attempt) for case in cases),
        lambda attempt: sum(case.high(attempt) for case in cases),
    )


def _capped(case: WaitCase, cap: float | int | timedelta) -> WaitCase:
    top = seconds_of(cap)
    return WaitCase(
        wait.capped(case.wait, max=cap),
        lambda attempt: min(case.low(attempt), top),
        lambda attempt: min(case.high(attempt), top),
    )


def _chain(cases: list[WaitCase]) -> WaitCase:
    def pick(attempt: int) -> WaitCase:
        return cases[min(attempt, len(cases)) - 1]

    return WaitCase(
        wait.chain(*(case.wait for case in cases)),
        lambda attempt: pick(attempt).low(attempt),
        lambda attempt: pick(attempt).high(attempt),
    )


def _combined(children: st.SearchStrategy[WaitCase]) -> st.SearchStrategy[WaitCase]:
    return st.one_of(
        children.map(_full_jitter),
        children.map(_equal_jitter),
        st.lists(children, min_size=1, max_size=3).map(_add),
        st.builds(_capped, children, durations()),
        st.lists(children, min_size=1, max_size=4).map(_chain),
    )


def wait_cases() -> st.SearchStrategy[WaitCase]:
    """Every built-in wait strategy with valid random arguments, nested in the combinators."""
    return st.recursive(_leaves(), _combined, max_leaves=8)


def waits() -> st.SearchStrategy[Wait]:
    """Every built-in wait strategy with valid random arguments, nested in the combinators."""
    return wait_cases().map(lambda case: case.wait)


# Retry-After values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryAfterCase:
    """A Retry-After value and the seconds it asks for, read at the wall-clock time NOW."""

    value: object
    seconds: float


def _http_dates() -> st.SearchStrategy[RetryAfterCase]:
    moments = st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
    )  # HTTP-dates are whole GMT
    return moments.map(
        lambda moment: RetryAfterCase(
            format_datetime(moment, usegmt=True), max(0.0, moment.timestamp() - NOW)
        )
    )


def valid_retry_after() -> st.SearchStrategy[RetryAfterCase]:
    """Valid Retry-After values: seconds, timedeltas, delta-seconds text and HTTP-dates."""
    return st.one_of(
        st.integers(min_value=0, max_value=10**9).map(lambda n: RetryAfterCase(n, float(n))),
        seconds().map(lambda s: RetryAfterCase(s, s)),
        timedeltas().map(lambda d: RetryAfterCase(d, d.total_seconds())),
        st.integers(min_value=0, max_value=10**9).map(lambda n: RetryAfterCase(str(n), float(n))),
        st.tuples(st.integers(0, 10**6), st.integers(0, 999_999)).map(
            lambda parts: RetryAfterCase(f"{parts[0]}.{parts[1]}", float(f"{parts[0]}.{parts[1]}"))
        ),
        st.integers(min_value=0, max_value=10**6).map(
            lambda n: RetryAfterCase(str(n).encode(), float(n))
        ),
        _http_dates(),
    )


def garbage_retry_after() -> st.SearchStrategy[object]:
    """Values that are no Retry-After at all: each one must be ignored."""
    return st.one_of(
        bad_numbers(),
        st.booleans(),
        st.none(),
        st.timedeltas(max_value=timedelta(microseconds=-1)),
        st.integers(min_value=1, max_value=10**6).map(lambda n: f"-{n}"),
        st.sampled_from(
            [
                "",
                " ",
                "soon",
                "never",
                "1e3",
                "0x10",
                "+5",
                "5 seconds",
                "nan",
                "inf",
                "1.",
                ".5",
                "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit, but not an ASCII one
                "Wed, 21 Oct 2015 07:28:00",  # no zone
                "Wed, 21 Oct 2015 07:28:00 -0000",  # RFC 5322's "zone unknown"
                "Wed, 32 Oct 2015 07:28:00 GMT",
                "21/10/2015",
            ]
        ),
        st.builds(object),
        st.lists(st.integers(), max_size=2),
    )


# Values for the codec of shared backends -------------------------------------------------------

import dataclasses  # noqa: E402 - appended with the codec strategies below
from datetime import timezone  # noqa: E402

import attrs  # noqa: E402

__all__ += [
    "CodecBox",
    "CodecPair",
    "CodecTagged",
    "codec_hashables",
    "codec_values",
    "fixed_zones",
]


@dataclass(frozen=True)
class CodecPair:
    """A frozen dataclass the data codec stores by field: hashable when its fields are."""

    left: object
    right: object


@dataclass
class CodecBox:
    """A mutable dataclass with a keyword-only field and a default."""

    items: object
    note: object = dataclasses.field(default=None, kw_only=True)


@attrs.frozen
class CodecTagged:
    """An attrs class with a private field, so its constructor argument (`value`) differs."""

    _value: object
    label: str = "tagged"


# Strings the data codec must treat with care: tag-like dict keys, escapes, lone surrogates.
_AWKWARD_TEXT = ["", "$", "$t", "$m", "$o", "$$", "$zz", '"', "\\", "\x00", "\ud800", "\udfff", "é"]


def fixed_zones() -> st.SearchStrategy[timezone]:
    """Fixed-offset timezones, with and without a name of their own, UTC included."""
    offsets = st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59, seconds=-59, microseconds=-999_999),
        max_value=timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
    )
    return st.one_of(
        st.just(UTC),
        st.builds(timezone, offsets),
        st.builds(timezone, offsets, st.text(min_size=1, max_size=5)),
    )


def _texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=12),
        st.sampled_from(_AWKWARD_TEXT),
        st.text(st.characters(categories=["Cs", "Co", "Cc"]), max_size=4),
    )


def _moments() -> st.SearchStrategy[object]:
    zones = st.none() | fixed_zones()
    return st.one_of(
        st.builds(
            lambda moment, fold: moment.replace(fold=fold),
            st.datetimes(timezones=zones),
            st.integers(0, 1),
        ),
        st.dates(),
        st.builds(
            lambda moment, fold: moment.replace(fold=fold),
            st.times(timezones=zones),
            st.integers(0, 1),
        ),
        st.timedeltas(),
    )


def _big_ints() -> st.SearchStrategy[int]:
    # near powers of two from 64 bits to 1,506 digits, past the 640-digit text limit a process
    # may set; built by the strategy so that its repr stays short
    return st.builds(
        lambda exponent, offset, sign: sign * (2**exponent + offset),
        st.sampled_from([63, 64, 1999, 2000, 5000]),
        st.integers(-1, 1),
        st.sampled_from([1, -1]),
    )


def _codec_scalars(*, hashable: bool) -> st.SearchStrategy[object]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        _big_ints(),
        st.floats(allow_nan=not hashable),
        _texts(),
        st.binary(max_size=16),
        _moments(),
        st.decimals(allow_nan=not hashable, allow_infinity=True),
        st.uuids(),
    )


def codec_hashables() -> st.SearchStrategy[object]:
    """Hashable values the data codec stores: dict keys and set members (NaN left out).

    NaN is left out because a set or dict cannot find a NaN equal to another.
    """
    return st.recursive(
        _codec_scalars(hashable=True),
        lambda children: st.one_of(
            st.tuples(children, children),
            st.lists(children, max_size=3).map(tuple),
            st.frozensets(children, max_size=3),
            st.builds(CodecPair, children, children),
            st.builds(CodecTagged, children, _texts()),
        ),
        max_leaves=6,
    )


def codec_values() -> st.SearchStrategy[object]:
    """Every kind of value the data codec stores, nested: the property tests' input."""
    return st.recursive(
        st.one_of(_codec_scalars(hashable=False), codec_hashables()),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(_texts(), children, max_size=4),
            st.dictionaries(codec_hashables(), children, max_size=3),
            st.sets(codec_hashables(), max_size=3),
            st.frozensets(codec_hashables(), max_size=3),
            st.builds(CodecBox, children, note=children),
            st.builds(CodecPair, children, children),
        ),
        max_leaves=12,
    )
