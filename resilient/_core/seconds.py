# Converting and validating durations given by users: float seconds or timedelta, never negative,
# never NaN or infinite. Errors name the argument and say what to write instead.
from __future__ import annotations

import math
from datetime import timedelta

__all__ = [
    "Seconds",
    "finite_number",
    "non_negative_number",
    "non_negative_seconds",
    "positive_seconds",
]

Seconds = float | int | timedelta


def finite_number(name: str, value: object, hint: str, noun: str = "number") -> float:
    """Return *value* as a float, refusing non-numbers (TypeError), NaN and infinities.

    *hint* ends each error message: what to write instead; *noun* names what was expected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r} is not a {noun}: {hint}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range
        result = math.inf
    if not math.isfinite(result):
        raise ValueError(f"{name}={value!r} is not a finite {noun}: {hint}")
    return result


def non_negative_number(name: str, value: object) -> float:
    """Return *value* as a float, refusing non-numbers, NaN, infinities and negatives."""
    result = finite_number(name, value, f"give zero or more, e.g. {name}=0.5")
    if result < 0:
        raise ValueError(f"{name}={value!r} is negative: give zero or more")
    return result


def _to_float(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    hint = f"give seconds as a number or a datetime.timedelta, e.g. {name}=0.5"
    return finite_number(name, value, hint, noun="duration")


def non_negative_seconds(name: str, value: object) -> float:
    """Return *value* as float seconds, refusing negative, NaN and infinite durations."""
    result = _to_float(name, value)
    if result < 0:
        raise ValueError(f"{name}={value!r} is negative: give zero or more seconds")
    return result


def positive_seconds(name: str, value: object) -> float:
    """Return *value* as float seconds, refusing zero and anything non-positive."""
    result = _to_float(name, value)
    if result <= 0:
        raise ValueError(f"{name}={value!r} must be more than zero seconds")
    return result
