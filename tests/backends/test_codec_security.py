"""What the codec lets stored bytes do: observed with an audit hook, not inferred from code.

The unpickler raises a ``pickle.find_class`` audit event for every global a pickle names (the
first step of every gadget), and the import system an ``import`` event for every module it
loads. A hook installed once for this module records those events while a test asks it to, so
the tests show that forged pickles never reach the unpickler, that the data serializer never
unpickles or imports, and (so the check itself can fail) that a real unpickle is seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import pickle
import struct
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from strategies import CodecBox, CodecPair, CodecTagged

from resilient.backends.codec import Codec
from resilient.exceptions import CodecError

KEY = "app:cache:report:{9d1e}42"
SECRET = b"the deployment's secret, 32 byte"
ATTACKER_SECRET = b"a secret the attacker made up!!!"
WATCHED = {"pickle.find_class", "import"}

_recording: list[list[tuple[str, tuple[Any, ...]]]] = []


def _hook(event: str, arguments: tuple[Any, ...]) -> None:
    # Audit hooks cannot be removed, so this one only records while a test is listening.
    if _recording and event in WATCHED:
        _recording[-1].append((event, arguments))


sys.addaudithook(_hook)


@contextlib.contextmanager
def watching() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Record the watched audit events raised inside the block."""
    events: list[tuple[str, tuple[Any, ...]]] = []
    _recording.append(events)
    try:
        yield events
    finally:
        _recording.pop()


def find_class_events(events: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """Return the arguments of the ``pickle.find_class`` events among *events*."""
    return [arguments for event, arguments in events if event == "pickle.find_class"]


RAN: list[str] = []


def gadget_effect(note: str) -> str:
    """Stand in for the command a malicious pickle would run: record that it ran."""
    RAN.append(note)
    return note


class Gadget:
    """Pickles as a call of gadget_effect, like a ``__reduce__`` exploit."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (gadget_effect, ("gadget ran",))


class Trap:
    """A class that is no record: if a decoder ever called it, it would say so."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        RAN.append("Trap called")


@dataclasses.dataclass(frozen=True)
class Report:
    """A dataclass value, rebuilt by the data serializer without pickle."""

    title: str
    rows: list[CodecPair]
    created: datetime


@attrs.define
class Summary:
    """An attrs value, likewise."""

    report: Report
    tags: frozenset[str]


def envelope(
    payload: bytes, *, serializer: int, flags: int = 0, secret: bytes | None = None
) -> bytes:
    """Build an envelope around *payload* from the documented layout.

    Without *secret* the MAC is the public checksum: what anyone with write access can make.
    """
    header = struct.Struct(">2sBBBI").pack(b"\xffR", 1, serializer, flags, len(payload))
    raw_key = KEY.encode()
    signed = header + struct.pack(">Q", len(raw_key)) + raw_key + payload
    mac_key = (
        b"resilient.codec v1: no secret, a checksum against corruption only"
        if secret is None
        else hmac.digest(secret, b"resilient.codec v1 envelope MAC", "sha256")
    )
    return header + hmac.new(mac_key, signed, hashlib.sha256).digest() + payload


@pytest.fixture(autouse=True)
def _nothing_ran() -> None:
    """Start each test with no gadget run recorded."""
    RAN.clear()


def forged_pickles() -> list[bytes]:
    """Pickle envelopes an attacker can write without the deployment's secret."""
    attacker = Codec(serializer="pickle", secret=ATTACKER_SECRET)
    signed = attacker.encode(KEY, Gadget())
    payload = pickle.dumps(Gadget())
    genuine = Codec(serializer="pickle", secret=SECRET).encode(KEY, {"harmless": True})
    return [
        signed,  # signed with the attacker's own secret
        envelope(payload, serializer=2),  # a valid checksum, as a no-secret writer makes
        signed[:9] + bytes(32) + signed[41:],  # a blank MAC
        genuine[:41] + payload,  # a genuine MAC over other bytes (lengths differ: refused)
        genuine[:9] + genuine[9:41] + pickle.dumps(Gadget())[: len(genuine) - 41],
    ]


@pytest.mark.parametrize("index", range(5))
def test_forged_pickles_never_reach_the_unpickler(index: int) -> None:
    """A pickle codec verifies the MAC first: a forged gadget raises no find_class event."""
    codec = Codec(serializer="pickle", secret=SECRET)
    data = forged_pickles()[index]
    with watching() as events, pytest.raises(CodecError):
        codec.decode(KEY, data)
    assert find_class_events(events) == []
    assert RAN == []


@pytest.mark.parametrize("secret", [None, SECRET, ATTACKER_SECRET], ids=["none", "same", "other"])
def test_a_data_codec_never_unpickles_a_pickle_envelope(secret: bytes | None) -> None:
    """Even a pickle envelope with a valid MAC for it is refused by a data codec, unread."""
    data = (
        envelope(pickle.dumps(Gadget()), serializer=2)
        if secret is None
        else Codec(serializer="pickle", secret=secret).encode(KEY, Gadget())
    )
    with watching() as events, pytest.raises(CodecError) as caught:
        Codec(secret=secret).decode(KEY, data)
    assert caught.value.reason == "serializer"
    assert find_class_events(events) == []
    assert RAN == []


def test_the_data_serializer_rebuilds_records_without_pickle_or_imports() -> None:
    """Decoding attrs and dataclass values raises no find_class and no import event."""
    value = Summary(
        Report(
            "q3", [CodecPair(1, (2, 3)), CodecPair("a", b"b")], datetime(2024, 7, 1, tzinfo=UTC)
        ),
        frozenset({"x", "y"}),
    )
    others = [CodecBox(items=[CodecTagged(value={1: 2})], note={"n": None})]
    codecs = [Codec(), Codec(secret=SECRET, compress_above=0)]
    encoded = [(codec, codec.encode(KEY, item)) for codec in codecs for item in (value, others)]
    with watching() as events:
        decoded = [codec.decode(KEY, data) for codec, data in encoded]
    assert decoded == [value, others, value, others]
    assert events == []


def test_forged_data_payloads_call_nothing_and_import_nothing() -> None:
    """Checksummed data naming functions, plain classes or absent modules raises no event."""
    payloads = [
        b'{"$o":["test_codec_security","gadget_effect","note","x"]}',
        b'{"$o":["test_codec_security","Trap","x",1]}',
        b'{"$o":["os","system","command","id"]}',
        b'{"$o":["this_module_does_not_exist","Anything"]}',
        b'{"$o":["pickle","loads","data","x"]}',
    ]
    with watching() as events:
        for payload in payloads:
            with pytest.raises(CodecError) as caught:
                Codec().decode(KEY, envelope(payload, serializer=1, flags=0b10))
            assert caught.value.reason == "corrupt"
    assert events == []
    assert RAN == []
    assert "this_module_does_not_exist" not in sys.modules


def test_a_legitimate_pickle_round_trip_is_seen_by_the_hook() -> None:
    """A genuine pickle value does raise find_class events: the hook is live, the check real."""
    codec = Codec(serializer="pickle", secret=SECRET)
    data = codec.encode(KEY, Gadget())
    with watching() as events:
        assert codec.decode(KEY, data) == "gadget ran"
    assert ("test_codec_security", "gadget_effect") in find_class_events(events)
    assert RAN == ["gadget ran"]


def test_an_import_by_the_unpickler_is_seen_by_the_hook() -> None:
    """A signed pickle naming a module not yet imported raises an import event when decoded."""
    sys.modules.pop("colorsys", None)  # a small stdlib module without state, loaded afresh
    data = envelope(b"ccolorsys\nrgb_to_hsv\n.", serializer=2, secret=SECRET)
    with watching() as events:
        function = Codec(serializer="pickle", secret=SECRET).decode(KEY, data)
    assert callable(function)
    assert [arguments[0] for event, arguments in events if event == "import"] == ["colorsys"]
