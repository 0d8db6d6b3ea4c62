"""The decorator machinery, seen through @retry: binding, metadata, fusion, bad input."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import attrs
import pytest

import resilient
from resilient import RetryPolicy, retry, wait
from resilient._decorate import Wrapper, layers_of

T = TypeVar("T")

NAMES = ("method", "cm_above", "cm_below", "sm_above", "sm_below")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* on a fresh event loop."""
    return asyncio.run(coroutine)


def fail_first(calls: list[str], kind: str) -> None:
    """Record a call of *kind*, failing with ConnectionError the first time."""
    calls.append(kind)
    if calls.count(kind) == 1:
        raise ConnectionError(kind)


def once() -> resilient._decorate.Decorator:
    """A retry allowing one retry, with no wait."""
    return retry(on=ConnectionError, attempts=2, wait=wait.none())


def make_sync_classes(calls: list[str]) -> tuple[Any, Any]:
    """Return a class with every kind of retried sync method, and its undecorated twin."""

    class Plain:
        def method(self, x: int) -> tuple[object, int]:
            """Return the instance and x."""
            fail_first(calls, "method")
            return self, x

        @classmethod
        def cm_above(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_above")
            return cls, x

        @classmethod
        def cm_below(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_below")
            return cls, x

        @staticmethod
        def sm_above(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_above")
            return None, x

        @staticmethod
        def sm_below(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_below")
            return None, x

    class Service:
        @once()
        def method(self, x: int) -> tuple[object, int]:
            """Return the instance and x."""
            fail_first(calls, "method")
            return self, x

        @once()
        @classmethod
        def cm_above(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_above")
            return cls, x

        @classmethod
        @once()
        def cm_below(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_below")
            return cls, x

        @once()
        @staticmethod
        def sm_above(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_above")
            return None, x

        @staticmethod
        @once()
        def sm_below(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_below")
            return None, x

    return Service, Plain


def make_async_classes(calls: list[str]) -> tuple[Any, Any]:
    """Return a class with every kind of retried async method, and its undecorated twin."""

    class Plain:
        async def method(self, x: int) -> tuple[object, int]:
            """Return the instance and x."""
            fail_first(calls, "method")
            return self, x

        @classmethod
        async def cm_above(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_above")
            return cls, x

        @classmethod
        async def cm_below(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_below")
            return cls, x

        @staticmethod
        async def sm_above(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_above")
            return None, x

        @staticmethod
        async def sm_below(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_below")
            return None, x

    class Service:
        @once()
        async def method(self, x: int) -> tuple[object, int]:
            """Return the instance and x."""
            fail_first(calls, "method")
            return self, x

        @once()
        @classmethod
        async def cm_above(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_above")
            return cls, x

        @classmethod
        @once()
        async def cm_below(cls, x: int) -> tuple[object, int]:
            """Return the class and x."""
            fail_first(calls, "cm_below")
            return cls, x

        @once()
        @staticmethod
        async def sm_above(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_above")
            return None, x

        @staticmethod
        @once()
        async def sm_below(x: int) -> tuple[object, int]:
            """Return None and x."""
            fail_first(calls, "sm_below")
            return None, x

    return Service, Plain


def expected_self(name: str, cls: type, obj: object) -> object:
    """Return what the method *name* receives as its first argument."""
    if name == "method":
        return obj
    if name.startswith("cm"):
        return cls
    return None


# --- functions --------------------------------------------------------------------------------


def test_sync_function_is_retried_and_keeps_its_metadata() -> None:
    """A retried sync function retries, and keeps its name, doc, signature and __wrapped__."""
    calls: list[str] = []

    def fetch(url: str, *, limit: float = 1.0) -> str:
        """Fetch a URL."""
        fail_first(calls, "fetch")
        return url

    decorated = once()(fetch)

    assert decorated("u", limit=2.0) == "u"
    assert calls == ["fetch", "fetch"]
    assert decorated.__name__ == "fetch"
    assert decorated.__qualname__ == fetch.__qualname__
    assert decorated.__doc__ == "Fetch a URL."
    assert inspect.signature(decorated) == inspect.signature(fetch)
    assert decorated.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(decorated)


def test_async_function_is_retried_and_keeps_its_metadata() -> None:
    """A retried async function retries, keeps its metadata, and is a coroutine function."""
    calls: list[str] = []

    async def fetch(url: str, *, limit: float = 1.0) -> str:
        """Fetch a URL."""
        fail_first(calls, "fetch")
        return url

    decorated = once()(fetch)

    assert run(decorated("u", limit=2.0)) == "u"
    assert calls == ["fetch", "fetch"]
    assert decorated.__name__ == "fetch"
    assert decorated.__doc__ == "Fetch a URL."
    assert inspect.signature(decorated) == inspect.signature(fetch)
    assert decorated.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(decorated)


# --- methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sync_method_kinds_retry_through_instance_and_class(name: str) -> None:
    """Methods, classmethods and staticmethods (either decorator order) retry and bind right."""
    calls: list[str] = []
    service, _ = make_sync_classes(calls)
    obj = service()

    assert getattr(obj, name)(7) == (expected_self(name, service, obj), 7)
    assert calls == [name, name]
    if name == "method":
        assert service.method(obj, 8) == (obj, 8)
    else:
        assert getattr(service, name)(8) == (expected_self(name, service, obj), 8)
    assert calls == [name] * 3


@pytest.mark.parametrize("name", NAMES)
def test_async_method_kinds_retry_through_instance_and_class(name: str) -> None:
    """Async methods, classmethods and staticmethods (either order) retry and bind right."""
    calls: list[str] = []
    service, _ = make_async_classes(calls)
    obj = service()

    assert run(getattr(obj, name)(7)) == (expected_self(name, service, obj), 7)
    assert calls == [name, name]
    if name == "method":
        assert run(service.method(obj, 8)) == (obj, 8)
    else:
        assert run(getattr(service, name)(8)) == (expected_self(name, service, obj), 8)
    assert calls == [name] * 3


@pytest.mark.parametrize("make", [make_sync_classes, make_async_classes], ids=["sync", "async"])
@pytest.mark.parametrize("name", NAMES)
def test_method_kinds_keep_signature_name_doc_and_coroutine_flag(
    make: Callable[[list[str]], tuple[Any, Any]], name: str
) -> None:
    """Every method kind looks like its undecorated twin through the instance and the class."""
    service, plain = make([])
    for decorated, original in (
        (getattr(service, name), getattr(plain, name)),
        (getattr(service(), name), getattr(plain(), name)),
    ):
        assert inspect.signature(decorated) == inspect.signature(original)
        assert decorated.__name__ == original.__name__
        assert decorated.__doc__ == original.__doc__
        assert inspect.iscoroutinefunction(decorated) is inspect.iscoroutinefunction(original)
    assert inspect.iscoroutinefunction(getattr(service, name)) is (make is make_async_classes)


def test_method_wrapper_wraps_the_original_function() -> None:
    """A retried method's __wrapped__ is the function written in the class body."""
    service, _ = make_sync_classes([])
    raw = service.__dict__["method"].__wrapped__
    assert inspect.isfunction(raw)
    assert layers_of(raw) == ()
    assert raw.__qualname__.endswith("Service.method")
    below = service.__dict__["cm_below"].__func__
    assert len(layers_of(below)) == 1
    assert layers_of(below.__wrapped__) == ()


# --- generators -------------------------------------------------------------------------------


def test_generator_function_is_refused_at_decoration() -> None:
    """A generator function is refused with a TypeError naming the generator problem."""

    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*numbers\(\)"):
        once()(numbers)


def test_async_generator_function_is_refused_at_decoration() -> None:
    """An async generator function is refused with a TypeError naming the generator problem."""

    async def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*numbers\(\)"):
        once()(numbers)


def test_generator_staticmethod_is_refused_at_decoration() -> None:
    """A generator hidden in a staticmethod is refused too."""
    with pytest.raises(TypeError, match="generator"):

        class Service:
            @once()
            @staticmethod
            def numbers() -> Any:
                yield 1


# --- fusion -----------------------------------------------------------------------------------


def test_stacked_decorators_fuse_into_one_wrapper() -> None:
    """Two stacked @retry give one wrapper, two layers, around the original function."""

    def original(x: int) -> int:
        """Double x."""
        return 2 * x

    outer = retry(on=ConnectionError, name="outer")
    inner = retry(on=ValueError, name="inner")
    decorated = outer(inner(original))

    layers = layers_of(decorated)
    assert len(layers) == 2
    assert [layer.policy.name for layer in layers] == ["outer", "inner"]  # type: ignore[attr-defined]
    assert decorated.__wrapped__ is original  # type: ignore[attr-defined]
    assert layers_of(decorated.__wrapped__) == ()  # type: ignore[attr-defined]
    assert decorated(4) == 8
    assert inspect.signature(decorated) == inspect.signature(original)
    assert decorated.__doc__ == "Double x."


def test_layers_of_a_plain_function_is_empty() -> None:
    """An undecorated function has no resilient layers."""
    assert layers_of(len) == ()
    assert layers_of(lambda: None) == ()


def test_stacked_retries_nest_with_outer_seeing_inner_final_error() -> None:
    """Stacked retries behave as nested loops: the outer retries the inner's final error."""
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=2, wait=wait.none(), name="outer")
    @retry(on=ConnectionError, attempts=3, wait=wait.none(), name="inner")
    def always_down() -> None:
        calls.append(1)
        raise ConnectionError(len(calls))

    with pytest.raises(ConnectionError) as info:
        always_down()

    assert len(calls) == 6
    assert info.value.args == (6,)
    notes = info.value.__notes__
    assert len(notes) == 2
    assert notes[0].startswith("resilient.retry(inner): gave up after 3 attempts")
    assert notes[1].startswith("resilient.retry(outer): gave up after 2 attempts")


def test_a_plain_decorator_between_two_of_ours_runs_and_is_not_fused_over() -> None:
    """A functools.wraps decorator between two retries stays a layer of its own, run each attempt.

    Its wrapper carries a copy of ours's attributes; the outer retry must still wrap it rather
    than take it for our wrapper and run the inner layers without it.
    """
    logged: list[str] = []
    calls: list[int] = []

    def log(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def logging(*args: Any, **kwargs: Any) -> Any:
            logged.append(function.__name__)
            return function(*args, **kwargs)

        return logging

    @retry(on=ConnectionError, attempts=3, wait=wait.none(), name="outer")
    @log
    @retry(on=ConnectionError, attempts=3, wait=wait.none(), name="inner")
    def always_down() -> None:
        calls.append(1)
        raise ConnectionError

    with pytest.raises(ConnectionError):
        always_down()

    assert len(calls) == 9
    assert logged == ["always_down"] * 3


def test_stacked_retries_apply_their_own_on_in_the_right_order() -> None:
    """The inner layer handles its own errors first; only the outer one retries the rest."""
    script = [ValueError, ValueError, KeyError, ValueError, None]
    seen: list[str] = []

    @retry(on=KeyError, attempts=2, wait=wait.none(), name="outer")
    @retry(on=ValueError, attempts=5, wait=wait.none(), name="inner")
    def step() -> str:
        error = script.pop(0)
        seen.append("ok" if error is None else error.__name__)
        if error is not None:
            raise error("scripted")
        return "done"

    assert step() == "done"
    assert seen == ["ValueError", "ValueError", "KeyError", "ValueError", "ok"]


def test_stacked_async_retries_nest() -> None:
    """Stacked retries on an async function fuse and nest like the sync ones."""
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=2, wait=wait.none(), name="outer")
    @retry(on=ConnectionError, attempts=3, wait=wait.none(), name="inner")
    async def always_down() -> None:
        calls.append(1)
        raise ConnectionError(len(calls))

    assert inspect.iscoroutinefunction(always_down)
    assert len(layers_of(always_down)) == 2
    with pytest.raises(ConnectionError) as info:
        run(always_down())
    assert len(calls) == 6
    assert [note.split(":")[0] for note in info.value.__notes__] == [
        "resilient.retry(inner)",
        "resilient.retry(outer)",
    ]


def test_stacked_decorators_on_a_method_fuse_and_bind() -> None:
    """Stacked retries on a method give one wrapper that still binds the instance."""

    class Service:
        @retry(on=KeyError, attempts=2, wait=wait.none())
        @retry(on=ValueError, attempts=2, wait=wait.none())
        def method(self, x: int) -> tuple[object, int]:
            return self, x

    obj = Service()
    assert len(layers_of(Service.__dict__["method"])) == 2
    assert obj.method(3) == (obj, 3)
    assert Service.method(obj, 4) == (obj, 4)


# --- bad input --------------------------------------------------------------------------------


def test_missing_on_is_refused() -> None:
    """@retry() without on= is a TypeError that asks for on=."""
    with pytest.raises(TypeError, match=r"needs on=.*retry\(on=ConnectionError\)"):
        retry()
    with pytest.raises(TypeError, match="on="):
        retry(attempts=3)


def test_positional_exception_type_is_refused_with_the_right_spelling() -> None:
    """retry(ValueError) is a TypeError whose message shows the keyword spelling."""
    with pytest.raises(TypeError, match=r"pass it as on=: @retry\(on=ValueError\)"):
        retry(ValueError)  # type: ignore[arg-type]


def test_bare_decorator_is_refused_with_the_right_spelling() -> None:
    """@retry without parentheses is a TypeError whose message shows the right spelling."""
    with pytest.raises(TypeError, match=r"in parentheses: @retry\(on=ConnectionError\)"):

        @retry  # type: ignore[arg-type]
        def fetch() -> None:
            pass


def test_policy_with_keywords_is_evolved() -> None:
    """retry(policy, attempts=5) uses a copy of the policy with attempts=5."""
    policy = RetryPolicy(on=ConnectionError, attempts=2, wait=wait.none(), name="base")
    calls: list[int] = []

    @retry(policy, attempts=5)
    def always_down() -> None:
        calls.append(1)
        raise ConnectionError

    layer_policy = layers_of(always_down)[0].policy  # type: ignore[attr-defined]
    assert layer_policy == attrs.evolve(policy, attempts=5)
    assert policy.attempts == 2
    with pytest.raises(ConnectionError):
        always_down()
    assert len(calls) == 5


def test_policy_alone_is_used_as_is() -> None:
    """retry(policy) uses that very policy."""
    policy = RetryPolicy(on=ConnectionError)
    decorated = retry(policy)(lambda: None)
    assert layers_of(decorated)[0].policy is policy  # type: ignore[attr-defined]


def test_unknown_keyword_is_refused() -> None:
    """An unknown keyword argument is a TypeError naming it."""
    with pytest.raises(TypeError, match=r"unknown keyword 'tries'; the settings are: on, "):
        retry(on=ValueError, tries=3)  # type: ignore[call-arg]


def test_exception_instance_in_on_is_refused() -> None:
    """on= given an exception instance is a TypeError that says to pass the class."""
    with pytest.raises(TypeError, match="on=ValueError"):
        retry(on=ValueError("x"))  # type: ignore[arg-type]


def test_non_callable_target_is_refused() -> None:
    """Decorating something that is not callable is a TypeError."""
    with pytest.raises(TypeError, match="decorates functions"):
        once()(42)  # type: ignore[arg-type]


def test_sync_functions_get_a_plain_function_wrapper_and_async_ones_wrapt() -> None:
    """A decorated def is a plain function (one frame cheaper); an async def keeps wrapt's."""

    def double(x: int) -> int:
        return 2 * x

    async def adouble(x: int) -> int:
        return 2 * x

    decorated = retry(on=ConnectionError)(retry(on=ValueError)(double))
    assert inspect.isfunction(decorated)
    assert len(layers_of(decorated)) == 2
    assert decorated.__wrapped__ is double  # type: ignore[attr-defined]
    assert decorated(3) == 6
    assert isinstance(retry(on=ConnectionError)(adouble), Wrapper)
