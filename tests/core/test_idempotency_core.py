"""The idempotency core: keys, claim tokens, records and which errors are stored."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from resilient import IdempotencyPolicy
from resilient._core.idempotency import (
    Record,
    claim_token,
    fingerprint_of,
    key_problem,
    read_record,
)


@given(st.text(min_size=1, max_size=255).filter(str.isprintable))
def test_every_printable_key_up_to_255_characters_is_accepted(key: str) -> None:
    """Any printable string of 1 to 255 characters is a key."""
    assert key_problem(key) is None


@given(st.text(min_size=256, max_size=400))
def test_longer_keys_are_refused(key: str) -> None:
    """A key longer than 255 characters is refused, whatever it holds."""
    assert key_problem(key) is not None


@given(st.text(min_size=32, max_size=32, alphabet="0123456789abcdef"))
def test_a_claim_token_carries_its_fingerprint_and_is_new_each_time(fingerprint: str) -> None:
    """A claim token names the fingerprint it was made for, behind 128 random bits."""
    first, second = claim_token(fingerprint), claim_token(fingerprint)
    assert first != second
    assert fingerprint_of(first) == fingerprint_of(second) == fingerprint
    assert len(first.partition("~")[0]) == 32


def test_a_token_without_a_fingerprint_names_none() -> None:
    """A holder's token from another kind of claim (or none at all) names no fingerprint."""
    assert fingerprint_of(None) is None
    assert fingerprint_of("3f9b2c") is None


@given(st.text(), st.booleans(), st.one_of(st.integers(), st.text(), st.none()))
def test_records_round_trip_through_plain_data(fingerprint: str, ok: bool, value: object) -> None:
    """What a record becomes in storage (a tuple, or a list after JSON) reads back the same."""
    payload = value if ok else ("ValueError", "declined")
    stored = tuple(Record(fingerprint, ok=ok, payload=payload))
    assert read_record(stored) == Record(fingerprint, ok=ok, payload=payload)
    assert read_record(list(stored)) == Record(fingerprint, ok=ok, payload=payload)


def test_anything_else_is_not_a_record() -> None:
    """Values this library did not write are refused, whatever their shape."""
    for stored in (
        "text",
        b"bytes",
        ("fp", True),
        ("fp", 1, "value"),
        (1, True, "value"),
        ("fp", False, "not a pair"),
        ("fp", False, ("ValueError", 3)),
        ("fp", True, "value", "extra"),
        {"fingerprint": "fp"},
    ):
        assert read_record(stored) is None, stored


def test_store_errors_decides_which_exceptions_are_stored() -> None:
    """``store_errors`` is none, every Exception, or the named types and their subclasses."""

    class Declined(ValueError):
        pass

    assert not IdempotencyPolicy(key="id").stores(ValueError())
    assert IdempotencyPolicy(key="id", store_errors=True).stores(KeyError())
    named = IdempotencyPolicy(key="id", store_errors=[ValueError])
    assert named.store_errors == (ValueError,)
    assert named.stores(Declined())
    assert not named.stores(KeyError())
