"""Cache keys: which calls share an entry, what is refused, and the canonical encoding."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient
from resilient import CacheStatus, cache_status, cached
from resilient._keys import digest, encode
from resilient.exceptions import UncacheableArgumentError
from resilient.testing import FakeClock


class Opaque:
    """An object with nothing but the default repr: it cannot identify a call."""


@dataclasses.dataclass(frozen=True)
class Point:
    """A dataclass: its fields identify it."""

    x: int
    y: int


@attrs.frozen
class Box:
    """An attrs class: its fields identify it."""

    label: str


class Counter:
    """Counts the calls a decorated function makes, by arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> int:
        self.calls.append(args)
        return len(self.calls)


@pytest.fixture(autouse=True)
def frozen_time(fake_clock: FakeClock) -> FakeClock:
    """Every test here runs on a clock that does not move, so entries never expire."""
    return fake_clock


# --- calls that share an entry -----------------------------------------------------------------


def test_positional_keyword_and_default_forms_share_an_entry() -> None:
    """f(1), f(x=1), f(1, y=default) and f(x=1, y=default) are one call: one execution."""
    count = Counter()

    @cached(ttl=60)
    def f(x: int, y: int = 2) -> int:
        return count(x, y)

    assert {f(1), f(x=1), f(1, y=2), f(x=1, y=2), f(y=2, x=1)} == {1}
    assert count.calls == [(1, 2)]
    assert f(1, 3) == 2
    assert count.calls == [(1, 2), (1, 3)]


def test_keyword_only_and_variadic_parameters_are_part_of_the_key() -> None:
    """Keyword-only, *args and **kwargs parameters key a call, defaults filled in."""
    count = Counter()

    @cached(ttl=60)
    def f(*args: int, scale: int = 1, **options: str) -> int:
        return count(args, scale, options)

    assert f(1, 2) == f(1, 2, scale=1) == 1
    assert f(1, 2, scale=3) == 2
    assert f(1, 2, mode="a") == 3
    assert f(1, 2, mode="a") == 3
    assert f(2, 1) == 4
    assert len(count.calls) == 4


def test_async_calls_share_entries_the_same_way() -> None:
    """An async function keys its calls as a sync one does."""
    count = Counter()

    @cached(ttl=60)
    async def f(x: int, y: int = 2) -> int:
        await asyncio.sleep(0)
        return count(x, y)

    async def main() -> list[int]:
        return [await f(1), await f(x=1), await f(1, y=2), await f(1, 5)]

    assert asyncio.run(main()) == [1, 1, 1, 2]


def test_methods_skip_self_so_instances_share_entries() -> None:
    """A cached method keys calls by its arguments only: two instances share an entry."""
    count = Counter()

    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cached(ttl=60)
        def load(self, item: int) -> int:
            return count(self.name, item)

    first, second = Repo("a"), Repo("b")
    assert first.load(1) == 1
    assert second.load(1) == 1
    assert second.load(item=1) == 1
    assert count.calls == [("a", 1)]
    assert second.load(2) == 2


def test_async_methods_skip_self() -> None:
    """An async cached method shares entries between instances too."""
    count = Counter()

    class Repo:
        @cached(ttl=60)
        async def load(self, item: int) -> int:
            return count(item)

    async def main() -> list[int]:
        return [await Repo().load(1), await Repo().load(1), await Repo().load(item=1)]

    assert asyncio.run(main()) == [1, 1, 1]


def test_classmethods_and_staticmethods_in_either_order() -> None:
    """Class and static methods, decorated inside or outside @cached, key by their arguments."""
    count = Counter()

    class Maths:
        @classmethod
        @cached(ttl=60)
        def inner_class(cls, x: int) -> int:
            return count("inner_class", x)

        @cached(ttl=60)
        @classmethod
        def outer_class(cls, x: int) -> int:
            return count("outer_class", x)

        @staticmethod
        @cached(ttl=60)
        def inner_static(x: int) -> int:
            return count("inner_static", x)

        @cached(ttl=60)
        @staticmethod
        def outer_static(x: int) -> int:
            return count("outer_static", x)

    for name in ("inner_class", "outer_class", "inner_static", "outer_static"):
        via_class = getattr(Maths, name)(3)
        assert cache_status() is CacheStatus.MISS
        assert getattr(Maths(), name)(3) == via_class
        assert cache_status() is CacheStatus.HIT
        assert getattr(Maths(), name)(x=3) == via_class
    assert [call[0] for call in count.calls] == [
        "inner_class",
        "outer_class",
        "inner_static",
        "outer_static",
    ]


def test_equal_dataclass_and_attrs_instances_share_an_entry() -> None:
    """Dataclass and attrs instances key by their fields: equal instances, one execution."""
    count = Counter()

    @cached(ttl=60)
    def f(point: Point, box: Box) -> int:
        return count(point, box)

    assert f(Point(1, 2), Box("a")) == f(Point(1, 2), Box("a")) == 1
    assert f(Point(2, 1), Box("a")) == 2


def test_arguments_with_their_own_repr_are_cacheable() -> None:
    """Types with a meaningful repr (Fraction, Decimal, dates) are usable as arguments."""
    count = Counter()

    @cached(ttl=60)
    def f(value: object) -> int:
        return count(value)

    for value in (Fraction(1, 3), Decimal("1.50"), date(2024, 1, 2), timedelta(seconds=3)):
        first = f(value)
        assert f(value) == first
    assert len(count.calls) == 4


def test_dict_arguments_share_an_entry_whatever_their_order() -> None:
    """Equal dicts built in different insertion orders are one key (and lists of them too)."""
    count = Counter()

    @cached(ttl=60)
    def f(filters: dict[str, object]) -> int:
        return count(filters)

    assert f({"a": 1, "b": [1, 2]}) == 1
    assert f({"b": [1, 2], "a": 1}) == 1
    assert f({"a": 1, "b": [2, 1]}) == 2


def test_equal_arguments_are_one_call_in_memory_and_in_a_shared_backend() -> None:
    """f(1), f(1.0) and f(True) compare equal, so they are one call, in both kinds of key."""

    @cached(ttl=60)
    def kind(value: object) -> str:
        return type(value).__name__

    assert [kind(value) for value in (1, 1.0, True)] == ["int", "int", "int"]
    assert digest(1) == digest(1.0) == digest(True)  # noqa: FBT003 - the value under test
    assert digest(1.5) != digest(1)


# --- arguments that cannot be keys -------------------------------------------------------------


def test_default_repr_argument_is_refused_naming_key() -> None:
    """An argument with only the default repr raises UncacheableArgumentError pointing at key=."""
    count = Counter()

    @cached(ttl=60)
    def handle(request: object, user_id: int) -> int:
        return count(user_id)

    with pytest.raises(UncacheableArgumentError) as refused:
        handle(Opaque(), 7)
    assert isinstance(refused.value, TypeError)
    assert isinstance(refused.value, resilient.exceptions.ResilientError)
    message = str(refused.value)
    assert "key=" in message
    assert "Opaque" in message
    assert "handle()" in message
    assert count.calls == []


def test_default_repr_keyword_argument_is_refused_too() -> None:
    """The refusal does not depend on how the argument is passed."""

    @cached(ttl=60)
    def handle(request: object = None) -> None:
        raise AssertionError("never called")

    with pytest.raises(UncacheableArgumentError, match="key="):
        handle(request=Opaque())


def test_default_repr_argument_is_refused_in_async_functions() -> None:
    """An async cached function refuses such an argument when awaited, before running."""
    count = Counter()

    @cached(ttl=60)
    async def handle(request: object) -> int:
        return count(request)

    with pytest.raises(UncacheableArgumentError, match="key="):
        asyncio.run(handle(Opaque()))
    assert count.calls == []


def test_default_repr_object_nested_in_a_tuple_is_refused() -> None:
    """An opaque object inside a tuple argument is refused like a bare one, on every backend."""
    count = Counter()

    @cached(ttl=60)
    def handle(pair: tuple[object, int]) -> int:
        return count(pair)

    with pytest.raises(UncacheableArgumentError, match="key="):
        handle((Opaque(), 1))
    assert count.calls == []


def test_wrong_arguments_raise_a_type_error_naming_the_function() -> None:
    """Arguments that do not fit the signature fail as the plain call would, without a call."""
    count = Counter()

    @cached(ttl=60)
    def f(x: int) -> int:
        return count(x)

    with pytest.raises(TypeError, match=r"f\(\)"):
        f(1, 2)  # type: ignore[call-arg]  # wrong on purpose
    with pytest.raises(TypeError, match=r"f\(\)"):
        f(y=1)  # type: ignore[call-arg]  # wrong on purpose
    assert count.calls == []


# --- key= --------------------------------------------------------------------------------------


def test_key_template_picks_what_identifies_a_call() -> None:
    """key='{user_id}' ignores the other arguments, even ones that could not be keys."""
    count = Counter()

    @cached(ttl=60, key="{user_id}")
    def profile(request: object, user_id: int) -> int:
        return count(user_id)

    assert profile(Opaque(), 7) == 1
    assert profile(Opaque(), user_id=7) == 1
    assert profile(request=Opaque(), user_id=8) == 2
    assert count.calls == [(7,), (8,)]


def test_key_template_fills_in_defaults() -> None:
    """A template naming a defaulted parameter sees the default when it is not passed."""
    count = Counter()

    @cached(ttl=60, key="{user_id}:{lang}")
    def greeting(request: object, user_id: int, lang: str = "en") -> int:
        return count(user_id, lang)

    assert greeting(Opaque(), 1) == greeting(Opaque(), 1, "en") == 1
    assert greeting(Opaque(), 1, lang="fr") == 2


def test_key_template_on_a_method() -> None:
    """A template names a method's parameters; self is not one of them."""
    count = Counter()

    class Service:
        @cached(ttl=60, key="{user_id}")
        def profile(self, session: object, user_id: int) -> int:
            return count(user_id)

    assert Service().profile(Opaque(), 3) == Service().profile(Opaque(), 3) == 1


def test_key_callable_picks_what_identifies_a_call() -> None:
    """key=callable receives the call's arguments and returns what identifies it."""
    count = Counter()

    @cached(ttl=60, key=lambda request, user_id: user_id)
    def profile(request: object, user_id: int) -> int:
        return count(user_id)

    assert profile(Opaque(), 7) == profile(Opaque(), 7) == 1
    assert profile(Opaque(), 8) == 2


def test_key_callable_may_return_unhashable_data() -> None:
    """A key callable returning a list or dict still identifies calls by value."""
    count = Counter()

    @cached(ttl=60, key=lambda request, ids: {"ids": sorted(ids)})
    def load(request: object, ids: list[int]) -> int:
        return count(ids)

    assert load(Opaque(), [2, 1]) == load(Opaque(), [1, 2]) == 1
    assert load(Opaque(), [3]) == 2


@pytest.mark.parametrize("template", ["{uid}", "{0}", "{user_id", "{user_id!z}"])
def test_bad_key_template_is_refused_at_decoration_naming_the_parameters(template: str) -> None:
    """A template that does not fit the signature is a ValueError listing the parameters."""

    def profile(request: object, user_id: int, lang: str = "en") -> None:
        raise AssertionError("never called")

    decorate = cached(ttl=60, key=template)
    with pytest.raises(ValueError, match=r"\(lang, request, user_id\)") as refused:
        decorate(profile)
    assert "profile()" in str(refused.value)
    assert "key=" in str(refused.value)


def test_bad_tag_template_is_refused_at_decoration() -> None:
    """A tag template naming no parameter of the function fails when the decorator is applied."""

    def profile(user_id: int) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"\(user_id\)"):
        cached(ttl=60, tags=["user:{id}"])(profile)


# --- canonical encoding ------------------------------------------------------------------------

# A module defining values of every kind the encoding knows, loaded in this process and in
# fresh interpreters with other hash seeds: their digests must match.
VALUES_MODULE = """
import dataclasses, datetime, decimal, enum, fractions, uuid

import attrs


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 7


@dataclasses.dataclass
class Point:
    x: int
    y: object


@attrs.define
class Box:
    label: str


VALUES = [
    None, True, 0, -(2**80), 1.5, -0.5, "", "snowman \\u2603", b"\\x00\\xff",
    (1, "a"), [1, "a"], {"b": 1, "a": [2, 3]}, {3: "x", "3": "y"},
    {"words", "in", "a", "set", "whose", "order", "depends", "on", "the", "hash", "seed"},
    frozenset({b"x", b"y", b"z"}), {"nested": {"set": {"p", "q", "r", "s"}}},
    Colour.RED, Level.HIGH, Point(1, ("t", None)), Box("b"),
    datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 5, 6), datetime.timedelta(days=1, microseconds=5),
    decimal.Decimal("1.10"), uuid.UUID(int=7), fractions.Fraction(1, 3),
]
"""

DIGEST_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from cache_key_values import VALUES
from resilient._keys import digest
print(json.dumps([digest(value) for value in VALUES]))
"""


def test_digests_are_stable_across_processes_and_hash_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh interpreters with other hash seeds compute the very digests this process does."""
    (tmp_path / "cache_key_values.py").write_text(textwrap.dedent(VALUES_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cache_key_values", raising=False)
    from cache_key_values import VALUES  # noqa: PLC0415 - written by this test

    here = [digest(value) for value in VALUES]
    assert len(set(here)) == len(here)
    for seed in ("0", "1", "4242"):
        result = subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT, str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == here, f"PYTHONHASHSEED={seed}"


def test_digest_of_a_known_value_never_changes() -> None:
    """The encoding is a storage format: a known value keeps its digest across releases."""
    assert encode((1, "a", 1.5, None, True, b"x", [2], {"k": {3}})) == (
        b"(i1;s1:af3:1.5Ni1;b1:x[i2;){s1:k<i3;>})"
    )
    assert digest((1, "a")) == "7670a9fcb36e123e0221c4a869b3bb59"


DISTINCT = [
    1,
    1.5,
    "1",
    b"1",
    (1,),
    [1],
    {1},
    {1: None},
    None,
    0,
    "",
    b"",
    (),
    [],
    {},
]


def test_unequal_values_have_different_digests() -> None:
    """1, '1', b'1', (1,), [1], {1} and the like never share a digest."""
    digests = [digest(value) for value in DISTINCT]
    assert len(set(digests)) == len(DISTINCT)


def test_equal_values_of_different_types_share_a_digest() -> None:
    """0, False, 0.0 and -0.0 are one key, and so are a set and a frozenset of equal items."""
    assert len({digest(0), digest(False), digest(0.0), digest(-0.0)}) == 1  # noqa: FBT003 - False under test
    assert digest({1, 2}) == digest(frozenset({1, 2}))


def test_subclasses_and_enums_follow_equality() -> None:
    """An IntEnum member or int subclass equal to 1 is the key 1; a plain Enum member is not."""

    class Level(enum.IntEnum):
        ONE = 1

    class MyInt(int):
        pass

    class Plain(enum.Enum):
        ONE = 1

    assert len({digest(1), digest(Level.ONE), digest(MyInt(1))}) == 1
    assert digest(Plain.ONE) != digest(1)


def test_nested_structures_do_not_collide_by_concatenation() -> None:
    """Lengths and brackets keep ('ab',) apart from ('a', 'b') and [[1], 2] from [[1, 2]]."""
    assert digest(("ab",)) != digest(("a", "b"))
    assert digest([[1], 2]) != digest([[1, 2]])
    assert digest({"a": "bc"}) != digest({"ab": "c"})


def test_dict_and_set_order_does_not_matter() -> None:
    """Dicts and sets encode the same whatever order their items were added in."""
    assert encode({"a": 1, "b": 2}) == encode({"b": 2, "a": 1})
    churned = set(range(100)) | {"x", "y", "z"}  # the same set after another history
    churned -= set(range(100))
    assert encode({"x", "y", "z"}) == encode(churned)


def test_encoding_refuses_a_default_repr_object_anywhere() -> None:
    """digest() refuses an opaque object at any depth, naming where it was found."""
    with pytest.raises(UncacheableArgumentError, match="key="):
        digest({"a": [1, (2, Opaque())]}, "lookup()")


def test_datetimes_with_different_zones_are_distinct() -> None:
    """Aware and naive datetimes for the same wall time are different keys."""
    naive = datetime(2024, 1, 1, 12)
    assert digest(naive) != digest(naive.replace(tzinfo=UTC))
    assert digest(uuid.UUID(int=1)) != digest(str(uuid.UUID(int=1)))


def _leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
        st.binary(),
    )


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaves(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(st.text() | st.integers(), children, max_size=4),
            st.frozensets(st.integers() | st.text(), max_size=4),
        ),
        max_leaves=12,
    )


def rebuilt(value: Any) -> Any:
    """An equal copy of *value* made afresh: new objects, dicts and sets filled in reverse."""
    if isinstance(value, dict):
        return {rebuilt(k): rebuilt(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, frozenset):
        return frozenset(rebuilt(item) for item in reversed(list(value)))
    if isinstance(value, list | tuple):
        return type(value)(rebuilt(item) for item in value)
    if isinstance(value, str):
        return "".join(list(value))
    if isinstance(value, bytes):
        return bytes(bytearray(value))
    if type(value) is int:
        return int(str(value))
    return value


@given(value=_values())
def test_equal_values_give_equal_digests(value: Any) -> None:
    """Any value and an equal copy built afresh, in another order, share a digest."""
    assert digest(rebuilt(value)) == digest(value)


def typed(value: Any) -> Any:
    """*value* as nested tuples: equal iff the keys should be (numbers by value, lists and
    tuples apart)."""
    if isinstance(value, dict):
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(typed(item) for item in value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, bool | int | float):
        return ("number", int(value)) if float(value).is_integer() else ("float", repr(value))
    return (type(value).__name__, value)


@given(
    first=st.recursive(
        st.sampled_from([0, 1, True, False, 1.0, 0.0, "1", "", b"1", None]),
        lambda children: (
            st.lists(children, max_size=2)
            | st.lists(children, max_size=2).map(tuple)
            | st.dictionaries(st.sampled_from(["a", "b", 1]), children, max_size=2)
        ),
        max_leaves=4,
    ),
    second=st.recursive(
        st.sampled_from([0, 1, True, False, 1.0, 0.0, "1", "", b"1", None]),
        lambda children: (
            st.lists(children, max_size=2)
            | st.lists(children, max_size=2).map(tuple)
            | st.dictionaries(st.sampled_from(["a", "b", 1]), children, max_size=2)
        ),
        max_leaves=4,
    ),
)
def test_digests_collide_only_for_equal_values(first: Any, second: Any) -> None:
    """Two values share a digest exactly when they are equal item by item, lists and tuples
    apart."""
    assert (digest(first) == digest(second)) == (typed(first) == typed(second))


@given(value=_values())
def test_digest_is_128_bits_of_hex(value: Any) -> None:
    """A digest is 32 lowercase hex characters, fit for a storage key."""
    result = digest(value)
    assert len(result) == 32
    assert set(result) <= set("0123456789abcdef")


def test_a_key_callable_sees_the_arguments_as_passed() -> None:
    """key=callable is called with the call's own positional and keyword arguments."""
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def key(*args: Any, **kwargs: Any) -> object:
        seen.append((args, kwargs))
        return kwargs.get("user_id", args[-1] if args else None)

    count = Counter()

    @cached(ttl=60, key=key)
    def profile(user_id: int) -> int:
        return count(user_id)

    assert profile(5) == profile(user_id=5) == 1
    assert seen[:2] == [((5,), {}), ((), {"user_id": 5})]
