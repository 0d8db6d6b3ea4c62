# Call keys: which stored entry a call of a decorated function reads and writes.
#
# Rules:
# - A call is first reduced to the tuple of its parameter values in signature order, defaults
#   applied, `self`/`cls` skipped (wrapt passes them as `instance`, outside `args`), so that
#   `f(1)`, `f(x=1)` and `f(1, y=2)` (when 2 is y's default) are one key.
# - In-process keys are that tuple itself (no encoding on the hit path); shared keys are a
#   digest of its canonical encoding, so raw argument data never becomes a storage key.
# - An argument whose only representation is the default `<object at 0x...>` repr would give
#   every call its own key (and, in memory, keep the object alive): it is refused with
#   UncacheableArgumentError telling the user to pass `key=`.
# - Canonical encoding is deterministic across processes and Python runs: type-tagged,
#   length-prefixed, dicts and sets sorted by their encoded items.
# - Keys are equal exactly when the calls' arguments compare equal, in memory and in a shared
#   backend alike: as in a dict (and functools.lru_cache), 1, 1.0, True and an IntEnum member
#   of value 1 are one argument, and so are a set and a frozenset of the same items; a list
#   and a tuple are not, nor is a plain Enum member and its value.
# - A method reached through its class (`Repo.load(repo, 1)`) passes `self` in `args`; it is
#   split off so that the call has the key of `repo.load(1)`.
from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import uuid
from collections.abc import Callable, Hashable
from typing import Any

import attrs

from .exceptions import UncacheableArgumentError

__all__ = ["CallKeys", "digest", "encode"]

# types whose values are their own cache keys, checked first on the hit path
_PLAIN: frozenset[type] = frozenset({int, str, float, bool, type(None), bytes})
_BASES: tuple[type[int | float | str | bytes], ...] = (int, float, str, bytes)
_FORMAT_FIELDS = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY


def _has_own_repr(cls: type) -> bool:
    return cls.__repr__ is not object.__repr__  # type: ignore[comparison-overlap]  # mypy sees a method and a function


def _refuse(value: object, where: str) -> UncacheableArgumentError:
    cls = type(value)
    return UncacheableArgumentError(
        f"{where}: cannot make a cache key from {cls.__module__}.{cls.__qualname__} "
        f"{value!r}: its only representation is the default object repr, so every call would "
        "get a key of its own. Pass key= to say what identifies a call, e.g. "
        "@cached(ttl=60, key='{user_id}') or key=lambda request, user_id: user_id"
    )


def encode(value: object, where: str = "cache key") -> bytes:
    """Return the canonical bytes of *value*: equal values give equal bytes in any process."""
    out: list[bytes] = []
    _encode(value, out, where)
    return b"".join(out)


def digest(value: object, where: str = "cache key") -> str:
    """Return a 128-bit hex digest of the canonical encoding of *value*."""
    return hashlib.blake2b(encode(value, where), digest_size=16).hexdigest()


def _text(tag: bytes, text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"%s%d:%s" % (tag, len(raw), raw)


def _encode(value: object, out: list[bytes], where: str) -> None:  # noqa: PLR0912 - one branch per kind of value
    cls = type(value)
    if value is None:
        out.append(b"N")
    elif cls is int or cls is bool:  # True == 1: one key
        out.append(b"i%d;" % value)  # type: ignore[str-format]  # an int here
    elif cls is float:
        if value.is_integer():  # type: ignore[attr-defined]  # a float here; 1.0 == 1: one key
            out.append(b"i%d;" % value)  # type: ignore[str-format]  # a float here
        else:
            out.append(_text(b"f", repr(value)))
    elif cls is str:
        out.append(_text(b"s", value))  # type: ignore[arg-type]  # cls is str
    elif cls is bytes:
        out.append(b"b%d:%s" % (len(value), value))  # type: ignore[arg-type]  # cls is bytes
    elif isinstance(value, int | float | str | bytes):  # subclasses, IntEnum and StrEnum too
        base: Any = next(base for base in _BASES if isinstance(value, base))
        _encode(base(value), out, where)
    elif isinstance(value, enum.Enum):
        out.append(_text(b"e", f"{cls.__module__}.{cls.__qualname__}"))
        _encode(value.value, out, where)
    elif isinstance(value, tuple | list):
        out.append(b"(" if isinstance(value, tuple) else b"[")
        for item in value:
            _encode(item, out, where)
        out.append(b")")
    elif isinstance(value, dict):
        items = sorted(encode(k, where) + encode(v, where) for k, v in value.items())
        out.extend((b"{", *items, b"}"))
    elif isinstance(value, set | frozenset):  # {1} == frozenset({1}): one key
        out.extend((b"<", *sorted(encode(item, where) for item in value), b">"))
    elif isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        out.append(_text(b"d", f"{cls.__qualname__}:{value!r}"))
    elif isinstance(value, decimal.Decimal | uuid.UUID):
        out.append(_text(b"d", f"{cls.__qualname__}:{value}"))
    elif dataclasses.is_dataclass(value) or attrs.has(cls):
        out.append(_text(b"o", f"{cls.__module__}.{cls.__qualname__}"))
        fields = (
            attrs.fields(cls) if attrs.has(cls) else dataclasses.fields(value)  # type: ignore[arg-type]  # an instance here
        )
        _encode({field.name: getattr(value, field.name) for field in fields}, out, where)
    elif _has_own_repr(cls):
        out.append(_text(b"r", f"{cls.__module__}.{cls.__qualname__}:{value!r}"))
    else:
        raise _refuse(value, where)


def _check(value: object, where: str) -> None:
    """Refuse *value* if it, or an item of a tuple or frozenset in it, has no usable repr."""
    cls = type(value)
    if cls in _PLAIN:
        return
    if cls is tuple or cls is frozenset:
        for item in value:  # type: ignore[attr-defined]  # a tuple or frozenset here
            _check(item, where)
    elif not (_has_own_repr(cls) or dataclasses.is_dataclass(value) or attrs.has(cls)):
        raise _refuse(value, where)


class CallKeys:
    """Turn calls of one function into keys: in-process tuples and shared digests."""

    __slots__ = (
        "_key",
        "_method",
        "_name",
        "_names",
        "_signature",
        "_template",
        "_unbound",
        "arity",
    )

    def __init__(self, function: Callable[..., Any], name: str, key: object) -> None:
        self._name = name
        self._signature = inspect.signature(function)
        parameters = list(self._signature.parameters.values())
        self._unbound = self._signature.replace(parameters=parameters[1:])
        path = getattr(function, "__qualname__", "").split(".")
        self._method = (
            len(path) > 1
            and path[-2] != "<locals>"
            and bool(parameters)
            and parameters[0].name in {"self", "cls"}
        )
        simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        self._key: Callable[..., object] | None = None
        self._template: str | None = None
        if isinstance(key, str):
            self._check_template(key)
            self._template = key
        elif key is not None:
            if not callable(key):
                raise TypeError(
                    f"key={key!r} must be a callable taking the function's arguments, or a "
                    "template string such as '{user_id}:{lang}'"
                )
            self._key = key
        # How many positional arguments (without and with a bound instance) make a call whose
        # args tuple is its key; -1 when no call's is (a key= option, *args or keyword-only).
        plain = simple and key is None
        self.arity = (len(parameters), len(parameters) - 1) if plain else (-1, -1)
        # the parameter names such a call's args fill, without and with a bound instance
        names = tuple(p.name for p in parameters)
        self._names = (names, names[1:])

    def _check_template(self, template: str) -> None:
        names = {p.name for p in self._signature.parameters.values() if p.kind in _FORMAT_FIELDS}
        try:
            template.format_map(dict.fromkeys(names, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"key={template!r} is not a template of {self._name}()'s parameters "
                f"({', '.join(sorted(names))}): {exc!r}; write e.g. key='{{user_id}}'"
            ) from None

    def split(self, instance: object, args: tuple[Any, ...]) -> tuple[object, tuple[Any, ...]]:
        """Return the call's instance and its arguments without it, however it was called."""
        return self._split(instance, args)

    def _split(self, instance: object, args: tuple[Any, ...]) -> tuple[object, tuple[Any, ...]]:
        if instance is None and self._method and args:
            return args[0], args[1:]  # a method called through its class
        return instance, args

    def _bound(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        signature = self._signature if instance is None else self._unbound
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._name}(): {exc}") from None
        bound.apply_defaults()
        return bound

    def _values(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        instance, args = self._split(instance, args)
        if self._key is None and self._template is None:
            if kwargs or len(args) != self.arity[instance is not None]:
                return tuple(self._bound(instance, args, kwargs).arguments.values())
            return args
        if self._template is not None:
            return self._template.format_map(self._bound(instance, args, kwargs).arguments)
        assert self._key is not None
        return ("key", self._key(*args, **kwargs))

    def local(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """Return the in-process key of a call: its argument values, or what ``key=`` says.

        Arguments that cannot be hashed make the key their digest instead.
        """
        values = self._values(instance, args, kwargs)
        try:
            hash(values)
        except TypeError:
            return digest(values, f"{self._name}()")
        _check(values, f"{self._name}()")
        return values  # type: ignore[no-any-return]  # hashable, checked above

    def arguments(
        self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the call's arguments by parameter name, defaults applied, ``self`` left out."""
        instance, args = self._split(instance, args)
        if not kwargs and len(args) == self.arity[instance is not None]:
            # every parameter given by position: no binding needed (the common call)
            return dict(zip(self._names[instance is not None], args, strict=True))
        return dict(self._bound(instance, args, kwargs).arguments)

    def parameters(self) -> list[str]:
        """Return the names of the function's parameters, ``self`` or ``cls`` left out."""
        names = list(self._signature.parameters)
        return names[1:] if self._method else names

    def shared(self, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Return the digest that names a call in a shared backend."""
        return digest(self._values(instance, args, kwargs), f"{self._name}()")

    def tags(
        self, templates: tuple[str, ...], instance: object, args: tuple[Any, ...], kwargs: Any
    ) -> tuple[str, ...]:
        """Return *templates* filled in with the call's arguments."""
        if not any("{" in template for template in templates):
            return templates
        arguments = self._bound(*self._split(instance, args), kwargs).arguments
        return tuple(template.format_map(arguments) for template in templates)

    def check_tags(self, templates: tuple[str, ...]) -> None:
        """Raise a helpful error if a tag template names no parameter of the function."""
        for template in templates:
            self._check_template(template)
