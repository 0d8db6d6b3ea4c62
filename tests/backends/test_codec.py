"""The value codec of shared backends: round trips, compression, rotation, and every rejection.

Envelopes are built here from the documented layout with the standard library's hmac, not
with the codec's own code, so the tests also pin the format down: a change to it fails them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import pickle
import struct
import subprocess
import sys
import textwrap
import threading
import uuid
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any

import attrs
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import CodecBox, CodecPair, CodecTagged, codec_values

from resilient.backends.codec import Codec
from resilient.exceptions import CodecError

KEY = "app:cache:profile:{3fa9}c0ffee"
SECRET = b"correct horse battery staple, 32"
OLD_SECRET = b"the secret we used until Tuesday"

# The documented envelope layout, restated so that a change to the format is caught.
HEADER = struct.Struct(">2sBBBI")
MAGIC = b"\xffR"
DATA, PICKLE = 1, 2
COMPRESSED, TAGGED = 0b01, 0b10
PAYLOAD_START = 9 + 32
PUBLIC_LABEL = b"resilient.codec v1: no secret, a checksum against corruption only"
DERIVATION_LABEL = b"resilient.codec v1 envelope MAC"
REASONS = {"truncated", "corrupt", "version", "serializer", "mac", "oversized"}


def mac_key(secret: bytes | None) -> bytes:
    """Return the documented MAC key of a codec with *secret* (or without one)."""
    if secret is None:
        return PUBLIC_LABEL
    return hmac.digest(secret, DERIVATION_LABEL, "sha256")


def forge(
    payload: bytes,
    *,
    key: str = KEY,
    secret: bytes | None = None,
    serializer: int = DATA,
    flags: int = 0,
    version: int = 1,
) -> bytes:
    """Build an envelope from the documented layout, MAC and all, around any *payload*."""
    header = HEADER.pack(MAGIC, version, serializer, flags, len(payload))
    raw_key = key.encode()
    signed = header + struct.pack(">Q", len(raw_key)) + raw_key + payload
    return header + hmac.new(mac_key(secret), signed, hashlib.sha256).digest() + payload


def rejection(codec: Codec, data: bytes, key: str = KEY) -> str:
    """Decode *data*, which must fail, and return the CodecError's reason."""
    with pytest.raises(CodecError) as caught:
        codec.decode(key, data)
    assert caught.value.reason in REASONS
    return caught.value.reason


def same(left: object, right: object) -> bool:
    """Whether two values are equal with the same types throughout, NaN equal to NaN."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        assert isinstance(right, float)
        if math.isnan(left):
            return math.isnan(right)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    if isinstance(left, Decimal):
        return str(left) == str(right)  # sign, exponent and NaN kind, exactly
    if isinstance(left, list | tuple):
        assert isinstance(right, list | tuple)
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        assert isinstance(right, dict)
        pairs = zip(left.items(), right.items(), strict=False)
        return len(left) == len(right) and all(
            same(a, b) and same(x, y) for (a, x), (b, y) in pairs
        )
    if isinstance(left, set | frozenset):
        assert isinstance(right, set | frozenset)
        found = {item: item for item in right}
        return left == right and all(same(item, found[item]) for item in left)
    if isinstance(left, datetime | time):
        assert isinstance(right, datetime | time)
        return (
            left == right
            and left.fold == right.fold
            and same(left.tzinfo, right.tzinfo)
            and left.tzname() == right.tzname()
        )
    kind = type(left)
    if attrs.has(kind):
        names = [field.name for field in attrs.fields(kind)]
        return all(same(getattr(left, name), getattr(right, name)) for name in names)
    if dataclasses.is_dataclass(left):
        names = [field.name for field in dataclasses.fields(left)]
        return all(same(getattr(left, name), getattr(right, name)) for name in names)
    return left == right


def round_trip(codec: Codec, value: object) -> object:
    """Encode *value* and decode it again under the same key."""
    return codec.decode(KEY, codec.encode(KEY, value))


# Round trips -----------------------------------------------------------------------------------


@settings(max_examples=300)
@given(value=codec_values())
def test_every_supported_value_round_trips_with_its_types(value: object) -> None:
    """Any nesting of supported values decodes equal, with the same type at every level."""
    assert same(round_trip(Codec(), value), value)


@given(value=codec_values())
def test_round_trips_hold_compressed_and_signed(value: object) -> None:
    """Compression (threshold 0) and a secret change nothing about what comes back."""
    codec = Codec(secret=SECRET, compress_above=0)
    assert same(round_trip(codec, value), value)


@given(value=codec_values())
def test_a_pickle_codec_round_trips_the_same_values(value: object) -> None:
    """The pickle serializer gives back equal values of the same types too."""
    assert same(round_trip(Codec(serializer="pickle", secret=SECRET), value), value)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        [(1, 2), [3, (4,)]],
        {1, 2},
        frozenset({"a"}),
        {frozenset({1}): {2, 3}},
        b"\x00\xff",
        {1: "one", 2.5: "float", None: "none", (1, "a"): "tuple", b"k": "bytes"},
        {True: 1, "1": 2},
        [0, 0.0, False, None, "0"],
        {"$t": [1, 2]},
        [{"$t": [1, 2]}, (1,)],
        {"$": 1},
        {"$o": ["os", "system", "command", "id"]},
        -0.0,
        2**2000,
        -(2**5000),
        Decimal("-1.500"),
        Decimal("sNaN"),
        uuid.UUID(int=7),
        date(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999_999),
        datetime(2021, 11, 7, 1, 30, fold=1),
        datetime(2024, 2, 29, 12, tzinfo=timezone(timedelta(hours=-3, microseconds=1), "BRT")),
        time(23, 59, tzinfo=UTC),
        timedelta(days=-1, microseconds=1),
        CodecPair((1, 2), {3}),
        CodecTagged(value=[CodecBox(items=(1,), note=b"n")]),
        "\ud800 lone surrogates \udfff",
        "\ud800\udc00 two surrogates, not one astral character \U00010000",
    ],
    ids=repr,
)
def test_type_preservation(value: object) -> None:
    """Tuples stay tuples, sets stay sets, keys keep their types; tag-like dicts stay dicts."""
    assert same(round_trip(Codec(), value), value)


def test_nan_and_infinities_round_trip() -> None:
    """Float NaN and infinities come back as floats (NaN as NaN)."""
    decoded = round_trip(Codec(), [math.nan, math.inf, -math.inf])
    assert isinstance(decoded, list)
    assert math.isnan(decoded[0])
    assert decoded[1:] == [math.inf, -math.inf]


def test_huge_ints_decode_where_int_text_is_limited() -> None:
    """An int of thousands of digits decodes even under the lowest int-to-text limit."""
    value = [10**5000 + 1, -(10**700)]
    data = Codec().encode(KEY, value)
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert Codec().decode(KEY, data) == value
    finally:
        sys.set_int_max_str_digits(previous)


@pytest.mark.parametrize("key", [KEY, "", "ns:cache:café:{ü}"])
@pytest.mark.parametrize("secret", [None, SECRET])
def test_plain_json_is_stored_as_compact_json(key: str, secret: bytes | None) -> None:
    """The documented layout: header, MAC over header, length-prefixed key and payload, JSON."""
    value = {"id": 7, "tags": ["a", "b"], "score": 0.5, "ok": True, "none": None}
    data = Codec(secret=secret).encode(key, value)
    payload = b'{"id":7,"tags":["a","b"],"score":0.5,"ok":true,"none":null}'
    assert data == forge(payload, key=key, secret=secret)
    assert HEADER.unpack_from(data) == (MAGIC, 1, DATA, 0, len(payload))


def test_typed_values_set_the_tag_flag() -> None:
    """A value JSON alone would not preserve is stored with type tags and flag bit 1."""
    data = Codec().encode(KEY, {"when": date(2024, 1, 2), "pair": (1, 2)})
    assert HEADER.unpack_from(data)[3] == TAGGED
    assert json.loads(data[PAYLOAD_START:]) == {"when": {"$d": 738887}, "pair": {"$t": [1, 2]}}


# Values the data serializer refuses ------------------------------------------------------------


class Plain:
    """An ordinary class: the data serializer cannot store it."""


class Color(IntEnum):
    """An int subclass: stored as int it would come back as another type."""

    RED = 1


@dataclasses.dataclass
class WithComputedField:
    """A dataclass with a field its constructor does not take."""

    name: str
    length: int = dataclasses.field(init=False, default=0)


@dataclasses.dataclass
class WithInitVar:
    """A dataclass whose constructor takes an argument that is not a field."""

    name: str
    seed: dataclasses.InitVar[int]

    def __post_init__(self, seed: int) -> None:
        self.name = f"{self.name}{seed}"


@dataclasses.dataclass
class DecoratedSubclass(CodecBox):
    """A dataclass subclass decorated itself: stored like any dataclass."""


class PlainSubclass(CodecPair):
    """A subclass of a dataclass that is not decorated itself."""


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (Plain(), "test_codec.Plain"),
        (Color.RED, "test_codec.Color"),
        (bytearray(b"x"), "builtins.bytearray"),
        (WithComputedField("a"), "length are not init fields"),
        (WithInitVar("a", 1), "constructor takes other arguments"),
        (PlainSubclass(1, 2), "not itself an attrs or dataclass class"),
        (datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), "ZoneInfo"),
    ],
    ids=["class", "int-enum", "bytearray", "init-false", "init-var", "subclass", "zoneinfo"],
)
def test_unsupported_values_raise_type_error_saying_what_to_do(value: object, named: str) -> None:
    """An unsupported value is a TypeError naming the type, the problem and the way out."""
    with pytest.raises(TypeError, match="pickle") as caught:
        Codec().encode(KEY, value)
    assert named in str(caught.value)


def test_a_decorated_subclass_round_trips() -> None:
    """A dataclass subclass that is decorated itself is stored like any dataclass."""
    value = DecoratedSubclass(items=[1])
    assert same(round_trip(Codec(), value), value)


def test_a_class_defined_in_a_function_is_refused() -> None:
    """A class no reader could find by module and qualified name is refused on encode."""

    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(TypeError, match="top level of a module"):
        Codec().encode(KEY, Local(1))


def test_the_error_says_where_the_unsupported_value_is() -> None:
    """The TypeError gives the path to the offending value inside the containers."""
    value = {"orders": [1, {"lines": (2, CodecBox(items=Plain()))}]}
    with pytest.raises(TypeError, match=r"at value\['orders'\]\[1\]\['lines'\]\[1\]\.items"):
        Codec().encode(KEY, value)


def test_a_value_containing_itself_is_a_value_error() -> None:
    """A list that contains itself cannot be stored; the error says so."""
    value: list[object] = []
    value.append(value)
    with pytest.raises(ValueError, match="contains itself"):
        Codec().encode(KEY, value)


def test_unpicklable_values_raise_type_error() -> None:
    """A pickle codec refuses a value pickle cannot handle with a TypeError naming it."""
    with pytest.raises(TypeError, match="cannot pickle lock"):
        Codec(serializer="pickle", secret=SECRET).encode(KEY, threading.Lock())


# Construction ----------------------------------------------------------------------------------


def test_pickle_requires_a_secret() -> None:
    """A pickle codec without a secret is refused, saying why unpickling needs one."""
    with pytest.raises(ValueError, match="unpickling runs code"):
        Codec(serializer="pickle")


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"serializer": "json"}, ValueError, "not one of"),
        ({"secret": b"short"}, ValueError, "at least 16"),
        ({"secret": 12345}, TypeError, "bytes or str"),
        ({"secret": SECRET, "verify_secrets": [b"short"]}, ValueError, "at least 16"),
        ({"secret": SECRET, "verify_secrets": OLD_SECRET}, TypeError, "list of secrets"),
        ({"verify_secrets": [OLD_SECRET]}, ValueError, "needs secret="),
        ({"max_size": 0}, ValueError, "between 1 and"),
        ({"max_size": 2**32}, ValueError, "between 1 and"),
        ({"max_size": 1.5}, TypeError, "int number of bytes"),
        ({"compress_above": -1}, ValueError, "zero or more"),
        ({"compress_above": True}, TypeError, "int or None"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Nonsense settings raise at construction with a message saying what to write."""
    with pytest.raises(error, match=match):
        Codec(**arguments)


def test_the_repr_never_shows_a_secret() -> None:
    """A codec's repr says a secret is set without showing it."""
    text = repr(Codec(secret=SECRET, verify_secrets=[OLD_SECRET]))
    assert "<set>" in text
    assert SECRET.decode() not in text
    assert OLD_SECRET.decode() not in text


def test_a_str_secret_is_its_utf8_bytes() -> None:
    """A secret given as str signs exactly like its UTF-8 bytes."""
    data = Codec(secret=SECRET.decode()).encode(KEY, [1])
    assert Codec(secret=SECRET).decode(KEY, data) == [1]


# Compression and size --------------------------------------------------------------------------


def test_payloads_above_the_threshold_are_compressed() -> None:
    """A payload larger than compress_above is stored zstd-compressed, and smaller."""
    value = ["the same words again"] * 100
    data = Codec(compress_above=1024).encode(KEY, value)
    assert HEADER.unpack_from(data)[3] == COMPRESSED
    assert len(data) < len(json.dumps(value))
    assert Codec().decode(KEY, data) == value


def test_payloads_at_or_below_the_threshold_are_not() -> None:
    """A payload of compress_above bytes or fewer is stored as is."""
    value = "x" * 98  # 100 bytes of JSON
    assert HEADER.unpack_from(Codec(compress_above=100).encode(KEY, value))[3] == 0
    assert HEADER.unpack_from(Codec(compress_above=99).encode(KEY, value))[3] == COMPRESSED


def test_compress_above_none_never_compresses() -> None:
    """With compress_above=None nothing is compressed, however large."""
    data = Codec(compress_above=None).encode(KEY, "x" * 100_000)
    assert HEADER.unpack_from(data)[3] == 0


def test_payloads_compression_would_not_shrink_are_stored_as_they_are() -> None:
    """A payload that zstd would not make smaller (a tiny one here) is stored uncompressed."""
    data = Codec(compress_above=0).encode(KEY, "ab")
    assert HEADER.unpack_from(data)[3] == 0
    assert data[PAYLOAD_START:] == b'"ab"'


def test_an_oversized_value_is_refused_on_encode() -> None:
    """A value whose payload exceeds max_size raises ValueError naming both sizes."""
    with pytest.raises(ValueError, match="more than max_size=100"):
        Codec(max_size=100).encode(KEY, "x" * 100)
    Codec(max_size=100).encode(KEY, "x" * 98)  # exactly 100 bytes fits


def test_a_payload_over_the_readers_limit_is_oversized() -> None:
    """An envelope from a writer with a larger max_size is refused, unread, as oversized."""
    data = Codec(compress_above=None).encode(KEY, "x" * 2000)
    assert rejection(Codec(max_size=1000), data) == "oversized"


@pytest.mark.parametrize("declare_size", [True, False], ids=["declared", "undeclared"])
def test_a_decompression_bomb_is_oversized(declare_size: bool) -> None:
    """A small zstd frame expanding beyond max_size is stopped, whatever size it declares."""
    compressor = zstandard.ZstdCompressor(write_content_size=declare_size)
    bomb = compressor.compress(b"[" + b"0," * (1 << 20) + b"0]")
    assert len(bomb) < 1000
    data = forge(bomb, flags=COMPRESSED)
    codec = Codec(max_size=1 << 20)
    assert rejection(codec, data) == "oversized"
    assert codec.decode(KEY, codec.encode(KEY, ["after"] * 500)) == ["after"] * 500


def test_a_frame_needing_a_huge_window_is_refused() -> None:
    """A zstd frame asking for a window beyond the limit is rejected before it is decoded."""
    parameters = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    compressor = zstandard.ZstdCompressor(compression_params=parameters)
    chunks = compressor.compressobj()
    frame = chunks.compress(b"[" + b"1," * 1000 + b"1]") + chunks.flush()
    assert rejection(Codec(), forge(frame, flags=COMPRESSED)) == "corrupt"


def test_without_zstandard_values_are_stored_uncompressed_and_compressed_ones_refused() -> None:
    """If zstandard cannot be imported, encoding skips compression; compressed values fail."""
    compressed = Codec(compress_above=0).encode(KEY, ["spam"] * 200)
    assert HEADER.unpack_from(compressed)[3] == COMPRESSED
    script = f"""
        import sys
        sys.modules["zstandard"] = None  # makes `import zstandard` raise ImportError
        from resilient.backends.codec import Codec
        from resilient.exceptions import CodecError

        codec = Codec(compress_above=0)
        data = codec.encode({KEY!r}, ["spam"] * 200)
        assert data[4] == 0, data[4]
        assert codec.decode({KEY!r}, data) == ["spam"] * 200
        try:
            codec.decode({KEY!r}, {compressed!r})
        except CodecError as error:
            print(error.reason)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "serializer"


def test_one_codec_serves_many_threads() -> None:
    """Threads sharing one codec each get their own values back, compressed or not."""
    codec = Codec(compress_above=64)
    failures: list[object] = []

    def work(number: int) -> None:
        for round_number in range(200):
            value = {"thread": number, "round": round_number, "words": ["x" * number] * 20}
            if codec.decode(KEY, codec.encode(KEY, value)) != value:
                failures.append(value)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# Secrets and rotation --------------------------------------------------------------------------


def test_an_old_secret_still_verifies_after_rotation() -> None:
    """A codec signing with a new secret still reads values signed with a listed old one."""
    old = Codec(secret=OLD_SECRET).encode(KEY, {"v": 1})
    rotated = Codec(secret=SECRET, verify_secrets=[OLD_SECRET])
    assert rotated.decode(KEY, old) == {"v": 1}
    assert Codec(secret=SECRET).decode(KEY, rotated.encode(KEY, {"v": 2})) == {"v": 2}


def test_an_unknown_secret_does_not_verify() -> None:
    """Values signed with a secret the reader does not list are rejected by the MAC."""
    stranger = Codec(secret=b"someone else's secret, 32 bytes!").encode(KEY, {"v": 1})
    assert rejection(Codec(secret=SECRET, verify_secrets=[OLD_SECRET]), stranger) == "mac"
    assert rejection(Codec(), stranger) == "mac"


def test_signed_and_unsigned_codecs_do_not_read_each_other() -> None:
    """A codec with a secret refuses checksummed values, and the other way round."""
    assert rejection(Codec(secret=SECRET), Codec().encode(KEY, 1)) == "mac"
    assert rejection(Codec(), Codec(secret=SECRET).encode(KEY, 1)) == "mac"


def test_a_pickle_codec_reads_data_envelopes() -> None:
    """Switching a secret-holding deployment to pickle keeps its data values readable."""
    data = Codec(secret=SECRET).encode(KEY, (1, "a"))
    assert Codec(serializer="pickle", secret=SECRET).decode(KEY, data) == (1, "a")


# The corruption battery ------------------------------------------------------------------------


def envelope_samples() -> list[tuple[Codec, bytes]]:
    """Envelopes of each kind, each with the codec that wrote them."""
    data = Codec()
    signed = Codec(secret=SECRET, compress_above=64)
    pickled = Codec(serializer="pickle", secret=SECRET)
    return [
        (data, data.encode(KEY, {"id": 1, "tags": ["a"]})),
        (data, data.encode(KEY, (1, date(2024, 1, 1)))),
        (data, data.encode(KEY, None)),
        (signed, signed.encode(KEY, ["compressible"] * 20)),
        (pickled, pickled.encode(KEY, Plain)),
    ]


def expected_for_flip(data: bytes, index: int, flipped: int) -> str:
    """Return the reason the codec gives for *data* with byte *index* changed to *flipped*."""
    if index < 2:
        return "corrupt"
    if index == 2:
        return "version"
    if index == 3:
        return "serializer"
    serializer = data[3]
    if index == 4:
        allowed = COMPRESSED | (TAGGED if serializer == DATA else 0)
        return "corrupt" if flipped & ~allowed else "mac"
    if index < 9:
        changed = bytearray(data)
        changed[index] = flipped
        declared = HEADER.unpack_from(changed)[4]
        return "truncated" if declared > len(data) - PAYLOAD_START else "corrupt"
    return "mac"


@pytest.mark.parametrize("sample", range(5))
def test_every_single_bit_flip_is_rejected_with_its_reason(sample: int) -> None:
    """Flipping any one bit of an envelope gives a CodecError saying which part broke."""
    codec, data = envelope_samples()[sample]
    for index in range(len(data)):
        for bit in range(8):
            flipped = data[index] ^ (1 << bit)
            changed = data[:index] + bytes([flipped]) + data[index + 1 :]
            assert rejection(codec, changed) == expected_for_flip(data, index, flipped), (
                index,
                bit,
            )


@pytest.mark.parametrize("sample", range(5))
def test_every_truncation_is_rejected_as_truncated(sample: int) -> None:
    """Every prefix of an envelope is rejected as truncated."""
    codec, data = envelope_samples()[sample]
    for length in range(len(data)):
        assert rejection(codec, data[:length]) == "truncated", length


def test_trailing_bytes_are_corrupt() -> None:
    """Bytes after the declared payload make the envelope corrupt."""
    assert rejection(Codec(), Codec().encode(KEY, 1) + b"\x00") == "corrupt"


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        pickle.dumps({"a": 1}),
        b"\x00R\x01" + bytes(60),
        b"\xffS\x01" + bytes(60),
        b"hello",
        b"\xfe",
    ],
    ids=["json", "pickle", "magic0", "magic1", "text", "one-byte"],
)
def test_foreign_bytes_are_corrupt(data: bytes) -> None:
    """Bytes that do not start with the magic (another library's value) are corrupt."""
    assert rejection(Codec(), data) == "corrupt"


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_format_versions_are_refused(version: int) -> None:
    """An envelope of another format version is rejected as version, short or not."""
    data = forge(b"1", version=version)
    assert rejection(Codec(), data) == "version"
    assert rejection(Codec(), data[:3]) == "version"


def test_unknown_serializers_and_flags_are_refused() -> None:
    """An unknown serializer id is serializer; unknown flag bits are corrupt."""
    assert rejection(Codec(), forge(b"1", serializer=3)) == "serializer"
    assert rejection(Codec(), forge(b"1", serializer=0)) == "serializer"
    assert rejection(Codec(), forge(b"1", flags=0b100)) == "corrupt"
    pickled = forge(pickle.dumps(1), serializer=PICKLE, flags=TAGGED, secret=SECRET)
    assert rejection(Codec(serializer="pickle", secret=SECRET), pickled) == "corrupt"


def test_a_forged_mac_is_refused() -> None:
    """An envelope whose MAC was replaced by other bytes is rejected by the MAC."""
    data = Codec(secret=SECRET).encode(KEY, {"admin": False})
    forged = Codec(secret=SECRET).encode(KEY, {"admin": True})
    assert rejection(Codec(secret=SECRET), forged[:9] + data[9:41] + forged[41:]) == "mac"
    assert rejection(Codec(secret=SECRET), forged[:9] + bytes(32) + forged[41:]) == "mac"


def test_a_value_moved_to_another_key_is_refused() -> None:
    """A valid envelope copied to another key fails verification, with or without a secret."""
    for codec in (Codec(), Codec(secret=SECRET)):
        data = codec.encode("ns:cache:balance:{alice}", 100)
        assert codec.decode("ns:cache:balance:{alice}", data) == 100
        assert rejection(codec, data, key="ns:cache:balance:{mallory}") == "mac"
        assert rejection(codec, data, key="ns:cache:balance:{alice}x") == "mac"


class Gadget:
    """Pickles as a call of record_attack: what an attacker's payload would run."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (record_attack, ("attacker code ran",))


ATTACKS: list[str] = []


def record_attack(note: str) -> str:
    """Stand in for an attacker's command: record that it ran."""
    ATTACKS.append(note)
    return note


def test_an_attackers_pickle_is_refused_by_a_data_codec() -> None:
    """A data codec refuses a pickle envelope as serializer, whatever its MAC, running nothing."""
    ATTACKS.clear()
    unsigned = forge(pickle.dumps(Gadget()), serializer=PICKLE)
    signed = Codec(serializer="pickle", secret=SECRET).encode(KEY, Gadget())
    assert rejection(Codec(), unsigned) == "serializer"
    assert rejection(Codec(secret=SECRET), signed) == "serializer"
    assert ATTACKS == []


def test_an_attackers_pickle_is_refused_by_a_pickle_codec_with_another_secret() -> None:
    """A pickle codec refuses a gadget signed with another secret by the MAC, running nothing."""
    ATTACKS.clear()
    attacker = Codec(serializer="pickle", secret=b"the attacker's own secret, 32 by")
    data = attacker.encode(KEY, Gadget())
    assert rejection(Codec(serializer="pickle", secret=SECRET), data) == "mac"
    assert (
        rejection(Codec(serializer="pickle", secret=SECRET), forge(data[41:], serializer=PICKLE))
        == "mac"
    )
    assert ATTACKS == []
    assert attacker.decode(KEY, data) == "attacker code ran"  # the gadget is live
    assert ATTACKS == ["attacker code ran"]


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'{"$o":["os","system","command","id"]}', "a function"),
        (b'{"$o":["subprocess","Popen","args","id"]}', "a class that is no record"),
        (b'{"$o":["antigravity","x"]}', "a module not imported"),
        (b'{"$o":["strategies","CodecPair","left",1]}', "a missing field"),
        (b'{"$o":["strategies","CodecPair","left",1,"right",2,"extra",3]}', "an extra field"),
        (b'{"$o":["strategies","PlainSubclassOfNothing"]}', "a missing class"),
        (b'{"$zz":1}', "an unknown tag"),
        (b'{"$t":"abc"}', "a tuple from a string"),
        (b'{"$m":[1]}', "a key without a value"),
        (b'{"$s":[[1]]}', "an unhashable member"),
        (b'{"$d":"2024-01-01"}', "a date from a string"),
        (b'{"$D":[2024,13,1,0,0,0,0,0]}', "month 13"),
        (b'{"$b":"not base64!"}', "bad base64"),
        (b"[1,2", "cut-off JSON"),
        (b"[1] [2]", "two values"),
        (b'"\xff"', "invalid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "deep nesting"),
    ],
    ids=lambda item: item if isinstance(item, str) else "",
)
def test_hostile_data_payloads_with_a_valid_mac_are_corrupt(payload: bytes, why: str) -> None:
    """A checksummed payload that is no valid data value is corrupt, and nothing is imported."""
    assert why
    before = set(sys.modules)
    assert rejection(Codec(), forge(payload, flags=TAGGED)) == "corrupt"
    assert set(sys.modules) == before


@settings(max_examples=300)
@given(payload=st.binary(max_size=64), flags=st.sampled_from([0, TAGGED]))
def test_any_checksummed_payload_decodes_or_is_corrupt(payload: bytes, flags: int) -> None:
    """Whatever verified bytes a data envelope holds, decode returns a value or is corrupt."""
    reason = None
    try:
        Codec().decode(KEY, forge(payload, flags=flags))
    except CodecError as error:
        reason = error.reason
    assert reason in {None, "corrupt"}


@settings(max_examples=300)
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_only_ever_raise_codec_error(data: bytes) -> None:
    """No bytes at all make decode raise anything but CodecError."""
    for codec, candidate in [
        (Codec(), data),
        (Codec(serializer="pickle", secret=SECRET), MAGIC + b"\x01" + data),
    ]:
        with pytest.raises(CodecError) as caught:
            codec.decode(KEY, candidate)
        assert caught.value.reason in REASONS
