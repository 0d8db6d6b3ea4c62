# `resilient.pipeline(...)`: a stack of decorators declared once, checked once, applied as one.
#
# Rules:
# - Applying a pipeline builds its layers, innermost first, into the one wrapper _decorate.py
#   builds for decorators written above the function (`fuse`, with the names they are written
#   with), so a pipelined function is the hand-stacked one, layer for layer, and costs the same
#   per call.
# - Its order is checked when it is made, pair by pair, against the recommended order of the
#   composition page: each kind of layer has a rank (`_PLACES`), and no layer may sit above one
#   of a lower rank. Two kinds have more than one place, as that page says: a fallback may sit
#   just outside the part it covers, anywhere but under a cache or an idempotency record (which
#   would store its stand-in answer); a timeout written under a retry limits each attempt, and
#   may sit anywhere under it. A cache may also sit above the call's timeout.
# - The layers' `check` hooks (a CompositionWarning on a stack written by hand) run when it is
#   made too, and what they find is a ValueError: a check only reads the layers' policies (a
#   rule of _decorate.py), so it needs no function, and is given a stand-in named "...".
# - Applied over a function that carries `resilient` layers already, a pipeline takes them as
#   its innermost part: the whole stack is checked before anything is applied, so applying a
#   pipeline never warns.
# - The error for an order names the two layers out of order and an order that passes: the
#   stack sorted by rank, where a per-attempt timeout keeps its place under the retry and a
#   fallback its place above what it covers, unless a cache or idempotency record is there.
# - A pipelined function keeps the order (`_written_over` is its site's `order`): a `resilient`
#   decorator written by hand over it, at once or above other such decorators, is checked
#   against every layer under it when it is applied. Being written by hand, it is warned
#   about as a hand stack is (a CompositionWarning at its line, with the same message), not
#   refused: what you apply decides how a problem is reported, and a decorator never raises
#   for its place. Nothing of this runs when the function is called.
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeAlias, TypeVar

from ._breaker import Breaker, _BreakerLayer, breaker
from ._bulkhead import _BulkheadLayer, bulkhead
from ._cache import _CacheLayer, cached
from ._decorate import Decorator, Layer, Target, fuse, site_of, target_of
from ._dedupe import _DedupeLayer, deduped
from ._fallback import _FallbackLayer, fallback
from ._idempotent import _IdempotentLayer, idempotent
from ._lock import Lock, _LockLayer, lock
from ._ratelimit import RateLimiter, _RateLimitLayer, rate_limited
from ._retry import _RetryLayer, retry
from ._timeout import _TimeoutLayer, timeout

__all__ = ["Pipeline", "pipeline"]

P = ParamSpec("P")
R = TypeVar("R")

Apply: TypeAlias = Callable[[Callable[..., Any]], Any]


class _Place(NamedTuple):
    kind: str
    rank: int
    role: str  # what it does, as said of it when it is out of order


_PLACES: dict[type[Layer], _Place] = {
    _FallbackLayer: _Place("fallback", 0, "answers what everything below it gives up on"),
    _TimeoutLayer: _Place("timeout", 1, "is the time budget of everything below it"),
    _CacheLayer: _Place("cached", 2, "skips everything below it on a hit"),
    _IdempotentLayer: _Place("idempotent", 2, "skips everything below it on a replay"),
    _RetryLayer: _Place("retry", 3, "tries again what fails below it"),
    _DedupeLayer: _Place("deduped", 4, "lets concurrent identical attempts share one execution"),
    _BreakerLayer: _Place("breaker", 5, "measures every attempt and refuses calls while open"),
    _BulkheadLayer: _Place("bulkhead", 6, "holds a slot only while an attempt runs"),
    _LockLayer: _Place("lock", 6, "holds the lock only while an attempt runs"),
    _RateLimitLayer: _Place("rate_limited", 7, "spends a token only on a call that goes out"),
}
_ORDER = ", ".join(
    " or ".join(place.kind for place in _PLACES.values() if place.rank == rank)
    for rank in sorted({place.rank for place in _PLACES.values()})
)
_RANKS = {place.kind: place.rank for place in _PLACES.values()}
_ROLES = {place.kind: place.role for place in _PLACES.values()}
_INNERMOST = max(_RANKS.values()) + 1
_STORING = frozenset({"cached", "idempotent"})
_PER_ATTEMPT = "timeout per attempt"  # a timeout with a retry above it
_FACTORIES = (
    breaker,
    bulkhead,
    cached,
    deduped,
    fallback,
    idempotent,
    lock,
    rate_limited,
    retry,
    timeout,
)


def _layer(item: object) -> Layer:
    """Return the layer *item* applies, or raise TypeError for what is not a decorator of ours."""
    layer: Layer
    if isinstance(item, Decorator):
        layer = item.layer
    elif isinstance(item, Breaker):
        layer = _BreakerLayer(item)
    elif isinstance(item, RateLimiter):
        layer = _RateLimitLayer(item.policy)
    elif isinstance(item, Lock):
        layer = _LockLayer(item)
    elif any(item is factory for factory in _FACTORIES):
        name = getattr(item, "__name__", "")
        raise TypeError(
            f"resilient.pipeline() takes decorators, and {name} makes one: call it with its "
            f"settings, e.g. resilient.pipeline({name}(...))"
        )
    else:
        raise TypeError(
            f"resilient.pipeline() takes resilient decorators (timeout, retry, breaker, ...) "
            f"and pipelines, not {item!r}. A decorator of your own goes outside the pipeline: "
            "write it above @pipeline, or right above the function, under it"
        )
    if type(layer) not in _PLACES:
        raise TypeError(f"resilient.pipeline() has no place for {layer!r} in its order")
    return layer


def _describe(layer: Layer) -> str:
    """Return how *layer* is written, enough to tell it from the others of a stack."""
    if isinstance(layer, _TimeoutLayer):
        return f"timeout({layer.seconds:g})"
    if isinstance(layer, _BreakerLayer):
        return f"breaker({layer.breaker.name!r})"
    if isinstance(layer, _LockLayer):
        return f"lock({layer.lock.name!r})"
    kind = _PLACES[type(layer)].kind
    name = getattr(getattr(layer, "policy", None), "name", None)
    return f"{kind}(name={name!r})" if name else f"{kind}(...)"


def _kinds(stack: Sequence[Layer]) -> list[str]:
    """Return the kind of each layer of *stack*, telling a timeout per attempt from a budget."""
    kinds = []
    retried = False
    for layer in stack:
        kind = _PLACES[type(layer)].kind
        retried = retried or kind == "retry"
        kinds.append(_PER_ATTEMPT if kind == "timeout" and retried else kind)
    return kinds


def _fits(outer: str, inner: str) -> bool:
    """Say whether a layer of kind *outer* may sit above one of kind *inner*."""
    if inner == "fallback":
        return outer not in _STORING
    if outer in ("fallback", _PER_ATTEMPT) or inner == _PER_ATTEMPT:
        return True
    return _RANKS[outer] <= _RANKS[inner] or (outer, inner) == ("cached", "timeout")


def _suggested(kinds: Sequence[str]) -> list[int]:
    """Return the indexes of a stack of *kinds* in an order that fits."""
    stores = any(kind in _STORING for kind in kinds)
    below = float(_INNERMOST)
    keys: list[float] = []
    for kind in reversed(kinds):  # a layer with two places keeps the one above the next layer
        if kind == "fallback":
            below = 0.0 if stores else below
        elif kind == _PER_ATTEMPT:
            below = max(_RANKS["retry"] + 0.5, below)
        else:
            below = float(_RANKS[kind])
        keys.append(below)
    keys.reverse()
    return sorted(range(len(kinds)), key=keys.__getitem__)


def _why(outer: str, inner: str) -> str:
    if inner == "fallback":
        return (
            f"under {outer}, a fallback's stand-in answer would be stored and given to every "
            "caller as if it were the real one"
        )
    why = f"{inner} {_ROLES[inner]}, and {outer} {_ROLES[outer]}"
    if "timeout" in (outer, inner):
        why += " (a timeout written under a retry limits each attempt instead)"
    return why


def _misplaced(stack: Sequence[Layer], labels: Sequence[str], written: int) -> str | None:
    """Say what is out of order in *stack*, with one of its first *written* layers above.

    *labels* describe the layers; the pairs with none of the first *written* layers in them
    are not looked at (they were checked when those layers were applied).
    """
    kinds = _kinds(stack)
    for outer in range(written):
        for inner in range(outer + 1, len(stack)):
            if _fits(kinds[outer], kinds[inner]):
                continue
            above, below = kinds[outer], kinds[inner]
            order = ", ".join(labels[index] for index in _suggested(kinds))
            return (
                f"{labels[outer]} is written above {labels[inner]}, but {below} goes above "
                f"{above}: {_why(above, below)}. Write them in this order, outermost first: "
                f"{order} (the order is {_ORDER}, then the call)"
            )
    return None


def _check(stack: Sequence[Layer], labels: Sequence[str], hooked: int) -> None:
    """Raise ValueError for a pair of *stack* out of order, or what a layer's check finds.

    *labels* describe the layers in messages; the checks of the first *hooked* layers run
    (the others' ran when they were applied).
    """
    misplaced = _misplaced(stack, labels, len(stack))
    if misplaced is not None:
        raise ValueError(f"resilient.pipeline(): {misplaced}")
    # the function is not known yet; a check only names it (see the rules above)
    stand_in = Target(is_async=False, name="...", function=pipeline)
    for index in range(hooked):
        check = getattr(stack[index], "check", None)
        if check is None:
            continue
        for problem in check(tuple(stack[index + 1 :]), stand_in):
            raise ValueError(f"resilient.pipeline(): {problem}")


def _written_over(stack: tuple[Layer, ...], target: Target) -> Iterator[str]:
    """Say how *stack*'s outermost layer, written by hand, breaks a pipeline's order.

    The `order` a pipelined function's site keeps, for a decorator applied over it.
    """
    misplaced = _misplaced(stack, tuple(map(_describe, stack)), 1)
    if misplaced is not None:
        yield (
            f"@{_describe(stack[0])} written over a resilient.pipeline() on {target.name} is "
            f"out of its order: {misplaced}"
        )


class Pipeline:
    """A stack of `resilient` decorators, in the recommended order, to apply as one decorator.

    Made by :func:`pipeline`. Applying it to a function (sync or async, a method too) gives
    what writing its decorators above that function gives: one wrapper around the function,
    whatever the number of policies. Apply it to as many functions as you like. A `resilient`
    decorator written above a pipelined function is checked against the order as it is
    applied, and draws a :class:`~resilient.exceptions.CompositionWarning` out of it.

    Attributes:
        policies: The decorators, outermost first, with those of a pipeline given to
            :func:`pipeline` in its place.
    """

    __slots__ = ("_labels", "_layers", "_names", "policies")

    def __init__(self, policies: tuple[Apply, ...], layers: tuple[Layer, ...]) -> None:
        self.policies = policies
        self._layers = layers
        self._labels = tuple(map(_describe, layers))
        # the names the decorators are written with, as a stack written by hand keeps them
        self._names = tuple(_PLACES[type(layer)].kind for layer in layers)

    def __repr__(self) -> str:
        return f"<Pipeline {', '.join(self._labels)}>"

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Apply the policies to *function*, as writing them above it would, in one wrapper.

        Raises:
            ValueError: For a function that carries `resilient` decorators already which,
                under the pipeline's, would be out of order.
        """
        layers, names = self._layers, self._names
        inner = site_of(function)
        if inner is not None:
            name = getattr(function, "__qualname__", "the function")
            labels = [*self._labels, *(f"{_describe(layer)} (on {name})" for layer in inner.layers)]
            layers, names = (*layers, *inner.layers), (*names, *inner.decorators)
            _check(layers, labels, len(self._layers))
            function = function.__wrapped__  # type: ignore[attr-defined]  # our wrapper has it
        target = target_of(function, "resilient.pipeline()")
        return fuse(function, target, layers, names, _written_over)


def pipeline(*policies: Apply) -> Pipeline:
    """Return one decorator applying *policies*, outermost first, after checking their order.

    Give the decorators you would write above a function, in the same order: ``@timeout``,
    ``@retry``, a breaker, and so on, or other pipelines, whose policies take their place.
    The order must be the recommended one (fallback, timeout, cached or idempotent, retry,
    deduped, breaker, bulkhead or lock, rate_limited, then the call), with its documented
    variants: a ``timeout`` written under a ``retry`` limits each attempt, and may go anywhere
    under it; a ``fallback`` may go just above the part it covers; ``cached`` may go above
    ``timeout``. A stack that would draw a
    :class:`~resilient.exceptions.CompositionWarning` written by hand is refused.

    Applied, it gives exactly what writing the decorators above the function gives: one
    wrapper around the function, at the same cost per call. Over a function that already has
    `resilient` decorators, those are the innermost part of the stack and must fit the order.
    A `resilient` decorator written above the pipelined function must fit it too: out of it,
    applying that decorator issues a :class:`~resilient.exceptions.CompositionWarning` (as a
    stack written by hand does), with the message a pipeline's ``ValueError`` gives.

    Raises:
        TypeError: For no policies, or anything that is not a `resilient` decorator or
            pipeline (a decorator factory not called, a decorator of your own).
        ValueError: For two policies out of order, naming them and an order to write
            instead, and for a stack in which one policy can never act.

    Example:
        >>> import resilient
        >>> from resilient import breaker, retry
        >>> guarded = resilient.pipeline(
        ...     resilient.timeout(2.0),
        ...     retry(on=ConnectionError, attempts=3),
        ...     breaker("catalog-api"),
        ... )
        >>> @guarded
        ... def product(sku: str) -> dict[str, str]:
        ...     return {"sku": sku}
        >>> product("A-1")
        {'sku': 'A-1'}
        >>> resilient.pipeline(breaker("catalog-api"), retry(on=ConnectionError))
        Traceback (most recent call last):
          ...
        ValueError: resilient.pipeline(): breaker('catalog-api') is written above retry(...), ...
    """
    if not policies:
        raise TypeError(
            "resilient.pipeline() needs the policies to apply, outermost first, e.g. "
            "resilient.pipeline(resilient.timeout(2.0), retry(on=ConnectionError))"
        )
    flat: list[Apply] = []
    for item in policies:
        flat.extend(item.policies if isinstance(item, Pipeline) else (item,))
    layers = tuple(map(_layer, flat))
    made = Pipeline(tuple(flat), layers)
    _check(layers, made._labels, len(layers))
    return made
