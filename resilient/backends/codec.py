"""Turn values into bytes a shared backend can store, and back, refusing anything tampered with.

A :class:`Codec` wraps each value in a small versioned envelope: which serializer wrote it,
whether it is compressed, and a MAC binding the bytes to the storage key they were written
under. :meth:`Codec.decode` checks all of that before it reads the payload, and raises
:class:`resilient.exceptions.CodecError` for anything it will not return; a backend turns that
into a miss and a :class:`resilient.events.StoredValueRejected` event.

The default *data* serializer stores plain data (JSON types, bytes, tuples, sets, dates and
times, ``Decimal``, ``UUID``, attrs and dataclass instances) and never runs code from what it
reads. The *pickle* serializer stores any picklable value and requires a secret, so that only
writers holding it can make a reader unpickle anything.
"""

# Rules of this module:
# - decode() raises CodecError and nothing else, whatever the bytes; encode() raises TypeError
#   for a value it cannot store and ValueError for one larger than max_size.
# - Nothing from the payload is interpreted before the MAC is verified; pickle bytes are never
#   unpickled by a data codec, whatever their MAC.
# - The data serializer imports nothing and calls nothing found through the payload except the
#   constructor of an attrs or dataclass class that is already imported, with its stored fields.
# - zstandard is optional and imported when a codec is built, never when this module is.
#
# Envelope, version 1 (integers big-endian):
#
#   offset  size  field
#   0       2     magic b"\xffR" (0xFF never starts UTF-8 text, JSON or a pickle)
#   2       1     format version, 1
#   3       1     serializer id: 1 data, 2 pickle
#   4       1     flags: bit 0 payload is zstd-compressed, bit 1 data payload carries type tags;
#                 every other bit must be zero
#   5       4     payload length in bytes (as stored, so compressed when bit 0 is set)
#   9       32    MAC: HMAC-SHA256 over bytes 0-8, the key's UTF-8 length as 8 bytes, the key's
#                 UTF-8 bytes (surrogates passed through), and the payload
#   41      n     payload
#
# The MAC key is HMAC-SHA256(secret, b"resilient.codec v1 envelope MAC") with a secret (a key of
# its own, should the secret serve elsewhere too), else the public _PUBLIC_LABEL below.
# The header is fixed-size and the key is length-prefixed, so no choice of key and payload can
# produce the MAC input of another key and payload. A new envelope layout, serializer encoding
# or type tag takes a new format version.
#
# Data payloads are compact JSON in UTF-8, surrogates written as themselves (UTF-8's
# "surrogatepass"), never as \u escapes: JSON would join an escaped pair into one character,
# and a str may hold a lone surrogate, or two that merely look like a pair. Plain JSON
# (str-keyed dicts, lists, str, int, float, bool, None) is stored as is, with flag bit 1 clear,
# and read back without a hook. Anything else sets bit 1: then a JSON object with exactly one
# key starting with "$" is a type tag (below); a plain dict of that shape is stored as "$m".
#
#   {"$t": [...]}  tuple              {"$D": [y, mo, d, h, mi, s, us, fold, zone...]}  datetime
#   {"$s": [...]}  set                {"$d": ordinal}                                    date
#   {"$f": [...]}  frozenset          {"$T": [h, mi, s, us, fold, zone...]}              time
#   {"$m": [k, v, k, v...]}  dict     {"$r": [days, seconds, microseconds]}              timedelta
#   {"$b": "base64"}  bytes           {"$n": "1.50"}  Decimal        {"$u": "hex"}  UUID
#   {"$i": "hex"}  int too long for JSON text in every process (2**2000 and beyond)
#   {"$o": [module, qualname, name, value, name, value...]}  attrs or dataclass instance
#
# A zone is empty (naive), [offset in microseconds], or [offset, name] when the fixed-offset
# timezone has a name of its own.
from __future__ import annotations

import binascii
import dataclasses
import functools
import hashlib
import hmac
import inspect
import json
import pickle
import struct
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import attrs

from ..exceptions import CodecError

if TYPE_CHECKING:
    import zstandard

__all__ = ["Codec"]

_MAGIC = b"\xffR"
_VERSION = 1
_PREFIX = _MAGIC + bytes([_VERSION])
_HEADER = struct.Struct(">2sBBBI")
_KEY_LENGTH = struct.Struct(">Q")
_MAC_SIZE = 32
_PAYLOAD_START = _HEADER.size + _MAC_SIZE
_SHA256_BLOCK = 64
_LARGEST_PAYLOAD = 2**32 - 1  # what the length field holds

_DATA = 1
_PICKLE = 2
_SERIALIZER_IDS = {"data": _DATA, "pickle": _PICKLE}

_COMPRESSED = 0b01
_TAGGED = 0b10
_ALLOWED_FLAGS = {_DATA: _COMPRESSED | _TAGGED, _PICKLE: _COMPRESSED}

# Pickle protocol 5 is read by every Python this library supports; a newer default would not be.
_PICKLE_PROTOCOL = 5
_MIN_SECRET_BYTES = 16
# The MAC key of a codec without a secret: public, so its MAC is a checksum, not a signature.
_PUBLIC_LABEL = b"resilient.codec v1: no secret, a checksum against corruption only"
_DERIVATION_LABEL = b"resilient.codec v1 envelope MAC"

_ZSTD_LEVEL = 3
# Level 3 never uses a window beyond 2 MiB; refusing larger windows bounds a hostile frame's
# memory before a byte of it is decompressed.
_ZSTD_MAX_WINDOW = 1 << 23
_ZSTD_CHUNK = 1 << 17

# Ints at or beyond this size are stored as hex: a process may limit int<->decimal text to as
# few as 640 digits (sys.set_int_max_str_digits), and 2**2000 has 603.
_BIG_INT = 1 << 2000
_SCALARS: frozenset[type] = frozenset({str, float, bool, type(None)})


def _fail(reason: str, message: str) -> CodecError:
    return CodecError(f"stored value rejected: {message}", reason=reason)


# Compression -----------------------------------------------------------------------------------


class _Zstd(threading.local):
    """One zstd compressor and decompressor per thread: zstandard's contexts are not shareable."""

    def __init__(self) -> None:
        import zstandard  # noqa: PLC0415 - an optional extra, imported only when a codec is built

        self.compressor: zstandard.ZstdCompressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        self.decompressor: zstandard.ZstdDecompressor = zstandard.ZstdDecompressor(
            max_window_size=_ZSTD_MAX_WINDOW
        )


@functools.cache
def _zstd() -> _Zstd | None:
    try:
        return _Zstd()
    except ImportError:
        return None


def _decompress(contexts: _Zstd | None, payload: bytes, limit: int) -> bytes:
    # Stream in chunks and stop past the limit: a frame's declared size is not trusted. Each
    # read_to_iter starts a fresh session, so one abandoned here leaves nothing behind.
    if contexts is None:
        raise _fail("serializer", "the value is compressed, and zstandard is not installed")
    chunks: list[bytes] = []
    total = 0
    for chunk in contexts.decompressor.read_to_iter(payload, write_size=_ZSTD_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _fail("oversized", f"decompresses to more than max_size={limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# Attrs and dataclass classes -------------------------------------------------------------------


class _Plan(NamedTuple):
    """How instances of one attrs or dataclass class are stored and rebuilt."""

    module: str
    qualname: str
    attributes: tuple[str, ...]  # read from an instance
    arguments: tuple[str, ...]  # passed to the constructor, in the same order


_PLANS: weakref.WeakKeyDictionary[type, _Plan] = weakref.WeakKeyDictionary()
_INIT_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _namespace(owner: object) -> Mapping[str, object]:
    # Read __dict__ directly: getattr could run a module's __getattr__ or load a lazy module.
    namespace: Mapping[str, object] = object.__getattribute__(owner, "__dict__")
    return namespace


def _find_class(module: str, qualname: str) -> object:
    """Return what *module*.*qualname* names among imported modules, without importing."""
    found: object = sys.modules[module]
    for part in qualname.split("."):
        found = _namespace(found)[part]
    return found


def _record_class(found: object) -> type:
    """Return *found* if it is an attrs or dataclass class itself, else raise TypeError.

    Judged by the type of *found* and a read of its namespace, so no code the class or its
    metaclass defines runs (a subclass of such a class is not one unless decorated itself).
    """
    if issubclass(type(found), type):
        namespace = _namespace(found)
        if "__attrs_attrs__" in namespace or "__dataclass_fields__" in namespace:
            return cast(type, found)
    raise TypeError("it is not itself an attrs or dataclass class (decorate subclasses too)")


def _plan(cls: type) -> _Plan:
    """Return how to store instances of *cls*; raise TypeError if they would not round-trip."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _make_plan(_record_class(cls))
    return plan


def _make_plan(cls: type) -> _Plan:
    if "__attrs_attrs__" in _namespace(cls):
        fields = [(field.name, field.alias, field.init) for field in attrs.fields(cls)]
    else:
        fields = [(field.name, field.name, field.init) for field in dataclasses.fields(cls)]
    skipped = [attribute for attribute, _, init in fields if not init]
    if skipped:
        raise TypeError(
            f"it cannot be rebuilt from its fields, as {', '.join(skipped)} are not init "
            "fields; make every field an init field"
        )
    arguments = tuple(argument for _, argument, _ in fields)
    parameters = inspect.signature(cls).parameters.values()
    if sorted(arguments) != sorted(p.name for p in parameters) or any(
        p.kind not in _INIT_KINDS for p in parameters
    ):
        raise TypeError(
            "it cannot be rebuilt from its fields, as its constructor takes other arguments "
            "(a custom __init__ or an InitVar)"
        )
    try:
        reachable = _find_class(cls.__module__, cls.__qualname__) is cls
    except (KeyError, TypeError):
        reachable = False
    if not reachable:
        raise TypeError(
            "a reader could not find the class by its module and qualified name; define it "
            "at the top level of a module"
        )
    return _Plan(
        cls.__module__, cls.__qualname__, tuple(attribute for attribute, _, _ in fields), arguments
    )


# The data serializer: encoding -----------------------------------------------------------------


class _UnsupportedError(TypeError):
    """A value the data serializer cannot store; *path* says where it was found."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _is_plain(value: Any) -> bool:
    """Whether *value* is JSON that json.loads gives back with the same types."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is int:
        return bool(-_BIG_INT < value < _BIG_INT)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _is_plain(item)):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110 - a loop costs less than all() over a generator
            if type(item) not in _SCALARS and not _is_plain(item):
                return False
        return True
    return False


def _within(value: Any, step: str, where: object) -> Any:
    """Return _tagged(value); on failure, add ``step.format(where)`` to the error's path."""
    try:
        return _tagged(value)
    except _UnsupportedError as error:
        error.path.insert(0, step.format(where))
        raise


def _items(items: Any) -> list[Any]:
    return [
        item if type(item) in _SCALARS else _within(item, "[{}]", index)
        for index, item in enumerate(items)
    ]


def _dict(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value) and not (len(value) == 1 and _is_tag(value)):
        return {
            key: item if type(item) in _SCALARS else _within(item, "[{!r}]", key)
            for key, item in value.items()
        }
    flat: list[Any] = []
    for key, item in value.items():
        flat.append(_within(key, " key {!r}", key))
        flat.append(_within(item, "[{!r}]", key))
    return {"$m": flat}


def _is_tag(value: dict[str, Any]) -> bool:
    return next(iter(value)).startswith("$")


def _zone(tzinfo: object) -> list[Any]:
    if tzinfo is None:
        return []
    if type(tzinfo) is not timezone:
        raise _UnsupportedError(
            f"a tzinfo of type {type(tzinfo).__qualname__} cannot be stored, only fixed offsets "
            "(datetime.timezone): convert first, e.g. value.astimezone(timezone.utc)"
        )
    offset = tzinfo.utcoffset(None)
    zone: list[Any] = [offset // timedelta(microseconds=1)]
    name = tzinfo.tzname(None)
    if name != timezone(offset).tzname(None):
        zone.append(name)
    return zone


def _datetime(value: datetime) -> Any:
    return {
        "$D": [
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            value.fold,
            *_zone(value.tzinfo),
        ]
    }


def _time(value: time) -> Any:
    parts = [value.hour, value.minute, value.second, value.microsecond, value.fold]
    return {"$T": [*parts, *_zone(value.tzinfo)]}


def _instance(value: Any) -> Any:
    plan = _plan(type(value))
    flat: list[Any] = [plan.module, plan.qualname]
    for attribute, argument in zip(plan.attributes, plan.arguments, strict=True):
        flat.append(argument)
        flat.append(_within(getattr(value, attribute), ".{}", attribute))
    return {"$o": flat}


_TAGGERS: dict[type, Callable[[Any], Any]] = {
    list: _items,
    dict: _dict,
    tuple: lambda value: {"$t": _items(value)},
    set: lambda value: {"$s": _items(value)},
    frozenset: lambda value: {"$f": _items(value)},
    bytes: lambda value: {"$b": binascii.b2a_base64(value, newline=False).decode("ascii")},
    datetime: _datetime,
    date: lambda value: {"$d": value.toordinal()},
    time: _time,
    timedelta: lambda value: {"$r": [value.days, value.seconds, value.microseconds]},
    Decimal: lambda value: {"$n": str(value)},
    uuid.UUID: lambda value: {"$u": value.hex},
}


def _tagged(value: Any) -> Any:
    """Return *value* as JSON-ready data, with a type tag wherever JSON alone would lose it."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is int:
        return value if -_BIG_INT < value < _BIG_INT else {"$i": format(value, "x")}
    tagger = _TAGGERS.get(kind)
    if tagger is not None:
        return tagger(value)
    if attrs.has(kind) or dataclasses.is_dataclass(kind):
        try:
            return _instance(value)
        except _UnsupportedError:
            raise
        except TypeError as error:  # the class itself does not round-trip
            name = f"{kind.__module__}.{kind.__qualname__}"
            raise _UnsupportedError(f"{name} instances: {error}") from None
    raise _UnsupportedError(f"a value of type {kind.__module__}.{kind.__qualname__}")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _dump_data(value: object) -> tuple[bytes, int]:
    """Return the data payload of *value* and its flags."""
    try:
        if _is_plain(value):
            return _ENCODER.encode(value).encode("utf-8", "surrogatepass"), 0
        return _ENCODER.encode(_tagged(value)).encode("utf-8", "surrogatepass"), _TAGGED
    except _UnsupportedError as error:
        where = "".join(error.path)
        raise TypeError(
            f"the data serializer cannot store {error.message}"
            + (f" (at value{where})" if where else "")
            + ". Convert it to supported types (JSON types, bytes, tuple, set, frozenset, "
            "date and time types, Decimal, UUID, attrs or dataclass instances), or opt into "
            "Codec(serializer='pickle', secret=...)"
        ) from None
    except RecursionError:
        raise ValueError("the value nests too deeply, or contains itself") from None


# The data serializer: decoding -----------------------------------------------------------------


def _list(body: object) -> list[Any]:
    if type(body) is not list:
        raise ValueError("a type tag's body is not a list")
    return body


def _int(body: object) -> int:
    if type(body) is not int:
        raise ValueError("a type tag's body is not an int")
    return body


def _text(body: object) -> str:
    if type(body) is not str:
        raise ValueError("a type tag's body is not a string")
    return body


def _unzone(parts: list[Any]) -> timezone | None:
    if not parts:
        return None
    offset = timedelta(microseconds=parts[0])
    if len(parts) == 1:
        return timezone(offset)
    (_, name) = parts
    return timezone(offset, _text(name))


def _undatetime(body: object) -> datetime:
    year, month, day, hour, minute, second, microsecond, fold, *zone = _list(body)
    return datetime(year, month, day, hour, minute, second, microsecond, _unzone(zone), fold=fold)


def _untime(body: object) -> time:
    hour, minute, second, microsecond, fold, *zone = _list(body)
    return time(hour, minute, second, microsecond, _unzone(zone), fold=fold)


def _unmapping(body: object) -> dict[Any, Any]:
    flat = _list(body)
    if len(flat) % 2:
        raise ValueError("a mapping has a key without a value")
    pairs = iter(flat)
    return dict(zip(pairs, pairs, strict=True))


def _uninstance(body: object) -> object:
    module, qualname, *flat = _list(body)
    # checked before anything else touches it, hashing included
    cls = _record_class(_find_class(_text(module), _text(qualname)))
    plan = _plan(cls)  # refuses a class whose instances would not round-trip
    arguments = _unmapping(flat)
    if tuple(arguments) != plan.arguments:
        raise ValueError(f"stored fields of {module}.{qualname} do not match the class")
    return cls(**arguments)


_UNTAGGERS: dict[str, Callable[[object], object]] = {
    "$t": lambda body: tuple(_list(body)),
    "$s": lambda body: set(_list(body)),
    "$f": lambda body: frozenset(_list(body)),
    "$m": _unmapping,
    "$b": lambda body: binascii.a2b_base64(_text(body), strict_mode=True),
    "$i": lambda body: int(_text(body), 16),
    "$D": _undatetime,
    "$d": lambda body: date.fromordinal(_int(body)),
    "$T": _untime,
    "$r": lambda body: timedelta(*_list(body)),
    "$n": lambda body: Decimal(_text(body)),
    "$u": lambda body: uuid.UUID(hex=_text(body)),
    "$o": _uninstance,
}


def _untag(obj: dict[str, Any]) -> object:
    if len(obj) == 1:
        (tag,) = obj
        if tag.startswith("$"):
            return _UNTAGGERS[tag](obj[tag])
    return obj


_PLAIN_DECODER = json.JSONDecoder()
_TAGGED_DECODER = json.JSONDecoder(object_hook=_untag)


def _load_data(payload: bytes, flags: int) -> object:
    """Return the value of a verified, decompressed data payload."""
    text = payload.decode("utf-8", "surrogatepass")
    value, end = (_TAGGED_DECODER if flags & _TAGGED else _PLAIN_DECODER).raw_decode(text)
    if end != len(text):
        raise ValueError("text follows the JSON value")
    return value


# The codec -------------------------------------------------------------------------------------


def _secret_bytes(name: str, secret: object) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes):
        raise TypeError(f"{name} must be bytes or str, not {type(secret).__qualname__}")
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(
            f"{name} is {len(secret)} bytes; use at least {_MIN_SECRET_BYTES} random bytes, "
            "e.g. secrets.token_bytes(32)"
        )
    return secret


class _Mac:
    """HMAC-SHA256 (RFC 2104) under one key, with both padded-key states hashed once.

    Copying two SHA-256 states per message costs about half as much as copying an
    ``hmac.HMAC`` object (which copies three); the result is the same, as the tests check.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        block = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def envelope(self, header: bytes, key: str, payload: bytes) -> bytes:
        """Return the MAC of an envelope: its *header*, length-prefixed *key*, *payload*."""
        raw_key = key.encode("utf-8", "surrogatepass")
        inner = self._inner.copy()
        inner.update(header + _KEY_LENGTH.pack(len(raw_key)) + raw_key)
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Codec:
    """Encode values into MAC-protected envelopes for a shared backend, and decode them.

    Args:
        serializer: ``"data"`` (the default) stores plain data and never runs code from what
            it reads; ``"pickle"`` stores any picklable value and requires *secret*.
        secret: The key of the MAC (at least 16 bytes; a str is UTF-8 encoded). With it, only
            holders of the secret can write values this codec accepts. Without it the MAC is a
            checksum: it catches corruption and values moved between keys, not forgery.
        verify_secrets: Former secrets, still accepted when decoding, so that a secret can be
            rotated while values written under the old one live.
        compress_above: Compress payloads larger than this many bytes with zstandard (when
            installed, as ``resilient[zstd]``); ``None`` never compresses.
        max_size: The largest payload in bytes, before compression, that is encoded or decoded.

    Raises:
        ValueError: For a pickle codec without a secret, a short secret, or a bad size.
        TypeError: For arguments of the wrong type.

    Example:
        >>> codec = Codec()
        >>> data = codec.encode("app:cache:user:1", {"name": "Ada", "roles": ("admin",)})
        >>> codec.decode("app:cache:user:1", data)
        {'name': 'Ada', 'roles': ('admin',)}
        >>> codec.decode("app:cache:user:2", data)
        Traceback (most recent call last):
          ...
        resilient.exceptions.CodecError: stored value rejected: the MAC does not match
    """

    __slots__ = (
        "_compress_above",
        "_max_size",
        "_pickle",
        "_repr",
        "_serializer",
        "_signer",
        "_verifiers",
        "_zstd",
    )

    def __init__(
        self,
        *,
        serializer: Literal["data", "pickle"] = "data",
        secret: bytes | str | None = None,
        verify_secrets: Sequence[bytes | str] = (),
        compress_above: int | None = 1024,
        max_size: int = 16 * 1024 * 1024,
    ) -> None:
        if serializer not in _SERIALIZER_IDS:
            raise ValueError(f"serializer={serializer!r} is not one of 'data' and 'pickle'")
        if serializer == "pickle" and secret is None:
            raise ValueError(
                "serializer='pickle' requires secret=: unpickling runs code chosen by whoever "
                "wrote the bytes, so only values signed with a secret may be unpickled. Pass "
                "secret=<at least 16 random bytes>, or store plain data with serializer='data'"
            )
        if isinstance(verify_secrets, str | bytes):
            raise TypeError("verify_secrets must be a list of secrets, not a single secret")
        if verify_secrets and secret is None:
            raise ValueError("verify_secrets needs secret=, the key that signs new values")
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size={max_size!r} must be an int number of bytes")
        if not 1 <= max_size <= _LARGEST_PAYLOAD:
            raise ValueError(f"max_size={max_size!r} must be between 1 and {_LARGEST_PAYLOAD}")
        if compress_above is not None:
            if isinstance(compress_above, bool) or not isinstance(compress_above, int):
                raise TypeError(f"compress_above={compress_above!r} must be an int or None")
            if compress_above < 0:
                raise ValueError(f"compress_above={compress_above!r} must be zero or more")
        self._serializer = _SERIALIZER_IDS[serializer]
        self._pickle = serializer == "pickle"
        self._max_size = max_size
        if secret is None:
            self._signer = _Mac(_PUBLIC_LABEL)
            self._verifiers: tuple[_Mac, ...] = ()
        else:
            # a key of its own for envelopes, in case the secret serves elsewhere too
            keys = [_secret_bytes("secret", secret)]
            keys += [_secret_bytes("verify_secrets item", old) for old in verify_secrets]
            macs = [_Mac(hmac.digest(key, _DERIVATION_LABEL, "sha256")) for key in keys]
            self._signer, self._verifiers = macs[0], tuple(macs[1:])
        self._zstd = _zstd()
        # with nothing to compress with, no payload is ever above the threshold
        self._compress_above = (
            max_size if compress_above is None or self._zstd is None else compress_above
        )
        self._repr = (
            f"Codec(serializer={serializer!r}, secret={'<set>' if secret else None}, "
            f"verify_secrets=<{len(verify_secrets)}>, compress_above={compress_above!r}, "
            f"max_size={max_size!r})"
        )

    def __repr__(self) -> str:
        return self._repr

    def encode(self, key: str, value: object) -> bytes:
        """Return the envelope storing *value* under the storage key *key*.

        Raises:
            TypeError: *value* (or something in it) is of a type the serializer cannot store;
                the message says which, where, and what to do.
            ValueError: *value* encodes to more than ``max_size`` bytes, or nests too deeply.
        """
        if self._pickle:
            try:
                payload = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
            except RecursionError:
                raise ValueError("the value nests too deeply to pickle") from None
            except Exception as error:
                raise TypeError(
                    f"cannot pickle {type(value).__qualname__}: {error}. Make it picklable, or "
                    "convert it to a type that pickles"
                ) from error
            flags = 0
        else:
            payload, flags = _dump_data(value)
        size = len(payload)
        if size > self._max_size:
            raise ValueError(
                f"the value encodes to {size} bytes, more than max_size={self._max_size}: "
                "store something smaller, or raise max_size on every codec that reads it"
            )
        if size > self._compress_above:
            assert self._zstd is not None  # the threshold is max_size without zstandard
            packed = self._zstd.compressor.compress(payload)
            if len(packed) < size:
                payload = packed
                flags |= _COMPRESSED
        header = _HEADER.pack(_MAGIC, _VERSION, self._serializer, flags, len(payload))
        return header + self._signer.envelope(header, key, payload) + payload

    def decode(self, key: str, data: bytes) -> object:
        """Return the value stored in the envelope *data*, read from the storage key *key*.

        Raises:
            CodecError: The bytes are no envelope this codec accepts; its ``reason`` is
                ``"truncated"``, ``"corrupt"``, ``"version"``, ``"serializer"``, ``"mac"`` or
                ``"oversized"``. No other exception escapes, whatever the bytes.
        """
        try:
            serializer, flags, payload = self._open(key, data)
            # Verified: the payload is what a holder of the MAC key wrote for this key.
            if flags & _COMPRESSED:
                payload = _decompress(self._zstd, payload, self._max_size)
            if serializer == _PICKLE:
                return pickle.loads(payload)  # noqa: S301 - the MAC proves a secret holder wrote it
            return _load_data(payload, flags)
        except CodecError:
            raise
        except Exception as error:  # any failure on hostile bytes is a rejection
            reason = f"the payload does not decode ({type(error).__name__})"
            raise _fail("corrupt", reason) from error

    def _open(self, key: str, data: bytes) -> tuple[int, int, bytes]:
        """Check *data*'s header and MAC; return its serializer id, flags and payload."""
        if len(data) < _PAYLOAD_START or data[:3] != _PREFIX:
            raise _header_error(data)
        _, _, serializer, flags, length = _HEADER.unpack_from(data)
        stored = len(data) - _PAYLOAD_START
        if stored != length:
            if stored < length:
                raise _fail("truncated", f"{stored} of {length} payload bytes are present")
            raise _fail("corrupt", f"{stored - length} bytes follow the payload")
        allowed = _ALLOWED_FLAGS.get(serializer)
        if allowed is None:
            raise _fail("serializer", f"unknown serializer id {serializer}")
        if serializer == _PICKLE and not self._pickle:
            raise _fail("serializer", "a pickled value, and this codec reads data only")
        if flags & ~allowed:
            raise _fail("corrupt", f"unknown flags {flags:#04x}")
        if length > self._max_size:
            raise _fail("oversized", f"{length} bytes, over max_size={self._max_size}")
        header = data[: _HEADER.size]
        found = data[_HEADER.size : _PAYLOAD_START]
        payload = data[_PAYLOAD_START:]
        if not hmac.compare_digest(self._signer.envelope(header, key, payload), found) and (
            not any(
                hmac.compare_digest(verifier.envelope(header, key, payload), found)
                for verifier in self._verifiers
            )
        ):
            raise _fail("mac", "the MAC does not match")
        return serializer, flags, payload


def _header_error(data: bytes) -> CodecError:
    """Return why *data*, shorter than a header or not starting like one, is rejected."""
    start = bytes(data[: len(_MAGIC)])
    if start != _MAGIC[: len(start)]:
        return _fail("corrupt", "not an envelope (wrong magic bytes)")
    if len(data) > len(_MAGIC) and data[len(_MAGIC)] != _VERSION:
        return _fail("version", f"format version {data[len(_MAGIC)]}, this codec reads {_VERSION}")
    return _fail("truncated", f"{len(data)} bytes, shorter than an envelope's header")
