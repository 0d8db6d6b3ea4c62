"""Wait strategies for :func:`resilient.retry`: how long to wait between attempts.

Each strategy is a small immutable object whose repr is the expression that builds it; combine
them with the named functions :func:`add`, :func:`capped` and :func:`chain`.

Example:
    >>> from resilient import wait
    >>> wait.full_jitter(wait.exponential(initial=0.2, max=5))
    full_jitter(exponential(initial=0.2, multiplier=2.0, max=5.0))
    >>> wait.chain(wait.none(), wait.constant(1))(1, 0.0)
    0.0
"""

from ._core.backoff import (
    add,
    capped,
    chain,
    constant,
    decorrelated_jitter,
    equal_jitter,
    exponential,
    full_jitter,
    linear,
    none,
)

__all__ = [
    "add",
    "capped",
    "chain",
    "constant",
    "decorrelated_jitter",
    "equal_jitter",
    "exponential",
    "full_jitter",
    "linear",
    "none",
]
