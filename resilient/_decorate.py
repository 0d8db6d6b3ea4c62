# The one decorator factory every capability uses.
#
# Rules:
# - A decorated function gets exactly one wrapt FunctionWrapper, whatever the number of stacked
#   `resilient` decorators: applying a decorator to our own wrapper fuses the new layer into a
#   fresh wrapper around the original function instead of wrapping the wrapper.
# - A layer is a call step with wrapt's shape, `(wrapped, instance, args, kwargs) -> result`,
#   built once at decoration time around the step inside it; the innermost step calls the
#   function. For async functions each step returns an awaitable, so the chain stays one
#   coroutine per layer and no more.
# - Generator functions are refused at decoration time: a decorator around them would only see
#   the generator being created.
# - The wrapper is built with a binding name wrapt does not special-case, which stops wrapt from
#   looking up `__self__` on plain functions at every call (an AttributeError raised and cleared
#   each time, about two thirds of wrapt's overhead); methods, classmethods and staticmethods
#   still bind through the wrapped object's own descriptor.
# - A layer may name a `wrapper_type` (a subclass of `Wrapper`) to give the decorated function
#   methods of its own (a cache's `invalidate`); the wrapper keeps every built step, so those
#   methods find their layer's state.
# - A plain sync function (a `def`, methods in a class body included) whose layers name no
#   `wrapper_type` gets a plain Python function as its wrapper instead, made with
#   functools.update_wrapper: calling it costs one Python frame less than wrapt's C call, which
#   builds an argument tuple and a keyword dict for every call. Such a function binds as a
#   method by itself, so its steps see `instance=None` and `self` as the first argument; the
#   layers that take this path (retry, breaker) never look at the instance. Async functions
#   keep wrapt, which keeps `inspect.iscoroutinefunction` true without a coroutine frame more.
# - A layer may have a `check(inner, target)` method: applied over other layers, it is given
#   them (outermost first) and returns what about that stack cannot work, each problem issued
#   as a CompositionWarning pointing at the decorator's line. Every pair of stacked layers is
#   seen once, by the outer one, when it is applied. A check only reads the layers' policies.
# - A site may carry an `order` (a `resilient.pipeline` applied puts its own there, and every
#   layer fused over it keeps it): a layer written by hand over such a site is given to it with
#   the whole stack, and what it says is issued like a check's problems. Hand stacks with no
#   pipeline in them carry none, and are checked by their layers' hooks only, as ever.
# - A CompositionWarning points at the first caller outside this package (`_user_level`), so
#   a decorator applied through a method of ours (a `Breaker`, a `Lock`) still names the line
#   that wrote it.
# - Tracing: a configured observer with a `call_spans` attribute that is not None (the
#   OpenTelemetry observer's, by default) asks for a span around every decorated call; the
#   first such observer is kept in `_spans` whenever the defaults change (an `on_change`
#   listener). A plain function wrapper reads `_spans` once per call: while it is None (always,
#   unless such an observer is configured) the call goes on as if there were no tracing, in
#   the same frame. wrapt's C wrapper cannot test a flag, so while tracing is off it calls the
#   layers directly, and the listener switches every live one to a tracing step (which reads
#   `_spans` the same way) when tracing turns on, and back when it turns off: the untraced
#   call costs not one frame more. Otherwise `_spans(site)` returns the context manager the call
#   runs in, so that the layers' events land on its span, or None for no span this time (no
#   tracing SDK installed yet). An async call's span opens when its coroutine starts and
#   closes when it ends. Tracing never changes what a call returns or raises.
from __future__ import annotations

import functools
import inspect
import os
import threading
import types
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import attrs
import wrapt

from ._config import DEFAULTS, on_change
from .exceptions import CompositionWarning

__all__ = [
    "Call",
    "CallSite",
    "CallSpans",
    "Decorator",
    "Layer",
    "Order",
    "Target",
    "Wrapper",
    "call_function",
    "fuse",
    "layers_of",
    "resolve_policy",
    "site_of",
    "target_of",
]

P = ParamSpec("P")
R = TypeVar("R")
_Policy = TypeVar("_Policy")

Call = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_BINDING = "resilient"


@attrs.frozen
class Target:
    """What a layer may know about the function it decorates."""

    is_async: bool
    name: str
    function: Callable[..., Any]


Order = Callable[[tuple["Layer", ...], Target], Iterable[str]]
"""A pipeline's order: given a stack (outermost first) whose outermost layer was written over
it by hand, and the function, what about that layer's place is out of the order."""


@attrs.frozen(eq=False)  # compared and hashed by identity: one per decorated function
class CallSite:
    """A decorated function as a whole: what fusing another layer, and tracing a call, need."""

    target: Target
    layers: tuple[Layer, ...]  # outermost first
    decorators: tuple[str, ...]  # the decorators' names, outermost first: "retry", "cached"...
    order: Order | None = None  # the order of a pipeline in the stack, if any: see the rules


CallSpans = Callable[[CallSite], AbstractContextManager[object] | None]
"""An observer's ``call_spans``: given a call's site, the context manager to run it in, or None."""

_spans: CallSpans | None = None  # the configured observer's `call_spans`, if any: see the rules
_wrappers: weakref.WeakSet[Wrapper] = weakref.WeakSet()  # wrapt's wrappers alive, to switch
_switching = threading.Lock()  # tracing turning on or off, and a wrapper joining `_wrappers`


def _find_spans() -> None:
    global _spans  # noqa: PLW0603 - the one flag every wrapper reads, kept in step with DEFAULTS
    found = (getattr(observer, "call_spans", None) for observer in DEFAULTS.observers)
    spans = next((spans for spans in found if spans is not None), None)
    with _switching:
        switch = (spans is None) is not (_spans is None)
        _spans = spans
        if switch:  # tracing turned on or off: wrapt's wrappers take or leave their tracing step
            for wrapper in list(_wrappers):
                wrapper._trace(on=spans is not None)


on_change(_find_spans)


async def _in_span(
    span: AbstractContextManager[object], start: Callable[[], Awaitable[Any]]
) -> Any:
    """Await the call *start* begins, inside *span* (an async call's span lasts while it runs)."""
    with span:
        return await start()


class Layer(Protocol):
    """One capability's contribution to a decorated function.

    A layer may also have ``check(inner, target) -> Iterable[str]``: applied over the layers
    *inner* (outermost first), it returns what about that stack cannot work, as messages.
    """

    def build(self, inner: Call, target: Target) -> Call:
        """Return the call step that runs this capability around *inner*."""


def call_function(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The innermost step: call the function itself.

    A layer whose *inner* is this step may call ``wrapped(*args, **kwargs)`` directly on its
    fast path instead, saving one Python call.
    """
    return wrapped(*args, **kwargs)


class Wrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]  # its generics are for wrapt's own use
    """The one wrapper around a decorated function, holding its layers and their steps."""

    def __init__(
        self,
        wrapped: Any,
        layers: tuple[Layer, ...],
        call: Call,
        steps: tuple[Call, ...],
        decorators: tuple[str, ...] = (),
        *,
        order: Order | None = None,
    ) -> None:
        site = CallSite(target_of(wrapped, "resilient"), layers, decorators, order)
        is_async = site.target.is_async

        def entry(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            spans = _spans
            if spans is None or (span := spans(site)) is None:
                return call(wrapped, instance, args, kwargs)
            if is_async:
                return _in_span(span, functools.partial(call, wrapped, instance, args, kwargs))
            with span:
                return call(wrapped, instance, args, kwargs)

        self._self_site = site
        self._self_steps = steps
        self._self_call = call
        self._self_entry = entry
        with _switching:
            self._trace(on=_spans is not None, wrapped=wrapped)
            _wrappers.add(self)

    def _trace(self, *, on: bool, wrapped: Any = None) -> None:
        """Call through the tracing step while *on*, else straight into the layers.

        wrapt's wrapper is set by its initialiser only, so it is run again with the other step;
        it keeps the wrapped function and the wrapper's attributes.
        """
        wrapped = self.__wrapped__ if wrapped is None else wrapped
        step = self._self_entry if on else self._self_call
        # the base initialiser takes the binding name, which FunctionWrapper would compute
        super(wrapt.FunctionWrapper, self).__init__(  # type: ignore[call-arg]  # see module note
            wrapped, None, step, None, _BINDING
        )


_SITE = "__resilient_site__"  # where a plain wrapper function keeps its CallSite


def site_of(function: object) -> CallSite | None:
    """Return the CallSite of *function*, one of our wrappers, or None for any other object."""
    if isinstance(function, Wrapper):
        site: CallSite = function._self_site
        return site
    if inspect.isfunction(function) and function.__code__ is _PLAIN_CODE:
        # only our own plain wrapper: functools.wraps copies its site into a foreign decorator's
        # wrapper written over it, which must stay a function of its own
        found: CallSite = function.__dict__[_SITE]
        return found
    return None


def layers_of(function: object) -> tuple[Layer, ...]:
    """Return the `resilient` layers applied to *function*, outermost first."""
    site = site_of(function)
    return () if site is None else site.layers


def _plain_wrapper(function: Callable[..., Any], site: CallSite, call: Call) -> Callable[..., Any]:
    """Return a plain function that runs *call* around *function* (see the module's rules)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spans = _spans
        if spans is None or (span := spans(site)) is None:
            return call(function, None, args, kwargs)
        with span:
            return call(function, None, args, kwargs)

    functools.update_wrapper(wrapper, function)
    setattr(wrapper, _SITE, site)
    return wrapper


_PLAIN_CODE = next(
    const for const in _plain_wrapper.__code__.co_consts if isinstance(const, types.CodeType)
)


def target_of(function: Callable[..., Any], decorator: str) -> Target:
    """Return what a layer may know of *function*; a TypeError if *decorator* cannot take it."""
    inner = function.__func__ if isinstance(function, (classmethod, staticmethod)) else function
    if not callable(inner):
        raise TypeError(f"{decorator} decorates functions and methods, not {function!r}")
    if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
        raise TypeError(
            f"{decorator} cannot decorate the generator function {inner.__qualname__}(): calling "
            "it only creates a generator, so failures while iterating would never reach the "
            "decorator. Decorate a function that consumes the generator instead."
        )
    module = getattr(inner, "__module__", None)
    qualname = getattr(inner, "__qualname__", None) or type(inner).__qualname__
    name = f"{module}.{qualname}" if module else qualname
    return Target(is_async=inspect.iscoroutinefunction(inner), name=name, function=inner)


@attrs.frozen
class Decorator:
    """A configured `resilient` decorator, ready to apply to functions and methods."""

    layer: Layer
    name: str

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Decorate *function*; stacked `resilient` decorators fuse into one wrapper."""
        inner = site_of(function)
        if inner is None:
            return fuse(function, target_of(function, self.name), (self.layer,), (self.name,))
        function = function.__wrapped__  # type: ignore[attr-defined]  # our wrapper has it
        target = target_of(function, self.name)
        layers = (self.layer, *inner.layers)
        check: Callable[[tuple[Layer, ...], Target], Iterable[str]] | None = getattr(
            self.layer, "check", None
        )
        problems = [] if check is None else list(check(inner.layers, target))
        if inner.order is not None:
            problems.extend(inner.order(layers, target))
        for problem in problems:
            warnings.warn(problem, CompositionWarning, stacklevel=_user_level())
        decorators = (self.name, *inner.decorators)
        return fuse(function, target, layers, decorators, inner.order)


_PACKAGE = os.path.dirname(__file__) + os.sep


def _user_level() -> int:
    """Return the stacklevel, for its caller, of the first frame outside this package."""
    level = 1
    # the frame of this call is never bound to a name, which would make a reference cycle
    caller: types.FrameType | None = getattr(inspect.currentframe(), "f_back", None)
    while caller is not None and caller.f_code.co_filename.startswith(_PACKAGE):
        caller = caller.f_back
        level += 1
    return level


def fuse(
    function: Callable[P, R],
    target: Target,
    layers: tuple[Layer, ...],
    decorators: tuple[str, ...],
    order: Order | None = None,
) -> Callable[P, R]:
    """Return the one wrapper that runs *layers* (outermost first) around *function*.

    *function* is the original (not one of our wrappers), *target* what `target_of` says of
    it, *decorators* the names the layers were written with, and *order* a pipeline's order
    the stack keeps.
    """
    call: Call = call_function
    steps: list[Call] = []
    wrapper_type = Wrapper
    for layer in reversed(layers):
        call = layer.build(call, target)
        steps.append(call)
        wrapper_type = getattr(layer, "wrapper_type", wrapper_type)
    names = tuple(name.removeprefix("@") for name in decorators)
    if wrapper_type is Wrapper and not target.is_async and inspect.isfunction(function):
        site = CallSite(target, layers, names, order)
        return cast("Callable[P, R]", _plain_wrapper(function, site, call))
    wrapper = wrapper_type(function, layers, call, tuple(steps), names, order=order)
    return cast("Callable[P, R]", wrapper)


def resolve_policy(
    caller: str, cls: type[_Policy], policy: object, given: Mapping[str, object], example: str
) -> _Policy:
    """Return the policy a decorator was given: *policy*, its fields as *options*, or both.

    Raises TypeError for a keyword that is not a field of *cls*, and for a *policy* that is
    not a *cls*, showing *example* as what to write instead.
    """
    options: dict[str, Any] = dict(given)
    fields = [field.alias for field in attrs.fields(cls) if field.init]  # type: ignore[arg-type]  # an attrs class
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise TypeError(
            f"{caller}() got unknown keyword {', '.join(map(repr, unknown))}; the settings are: "
            f"{', '.join(fields)}"
        )
    if policy is None:
        return cls(**options)
    if isinstance(policy, cls):
        return attrs.evolve(policy, **options) if options else policy  # type: ignore[misc]  # an attrs instance
    raise TypeError(
        f"{caller}() takes a {cls.__name__} or keyword arguments, not {policy!r}: write {example}"
    )
