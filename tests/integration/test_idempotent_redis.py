"""`@idempotent` on a real Redis: the round trips it costs, and what it does with bad records."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from cache_support import PATIENCE, EventLog
from redis_infra import RedisServer, commands_sent

import resilient
from resilient import idempotent
from resilient.backends import Codec, RedisBackend
from resilient.events import IdempotencyBypassed, StoredValueRejected
from resilient.exceptions import (
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyRecordError,
)


def new_key() -> str:
    return f"req-{uuid.uuid4()}"


def records(url: str) -> list[bytes]:
    """The record keys stored on the server (not claims)."""
    client = redis.Redis.from_url(url)
    return [key for key in client.scan_iter("*:idempotent:*") if not key.endswith(b":claim")]


def test_a_first_call_sends_two_commands_and_a_replay_one(redis_url: str) -> None:
    """Claiming and storing are one command each; a replay is one read."""
    backend = RedisBackend.from_url(redis_url)

    @idempotent(key="request_id", backend=backend)
    def pay(request_id: str, cents: int) -> dict[str, int]:
        return {"cents": cents}

    pay(new_key(), 1)  # loads the scripts and connects: not what is counted
    key = new_key()
    with commands_sent(redis_url) as first:
        assert pay(key, 5) == {"cents": 5}
    with commands_sent(redis_url) as replay:
        assert pay(key, 5) == {"cents": 5}
    assert first == ["EVALSHA", "EVALSHA"]
    assert replay == ["EVALSHA"]


def test_async_calls_send_the_same_commands(redis_url: str) -> None:
    """The asyncio client takes the same two commands and one."""
    backend = RedisBackend.from_url(redis_url)

    @idempotent(key="request_id", backend=backend)
    async def pay(request_id: str) -> int:
        return 7

    async def scenario() -> tuple[list[str], list[str]]:
        await pay(new_key())
        key = new_key()
        with commands_sent(redis_url) as first:
            await pay(key)
        with commands_sent(redis_url) as replay:
            assert await pay(key) == 7
        return first, replay

    assert asyncio.run(scenario()) == (["EVALSHA", "EVALSHA"], ["EVALSHA"])


def test_the_record_lives_ttl_by_the_servers_clock(redis_url: str) -> None:
    """Retention is the key's TTL on the server; the claim is gone once the record is stored."""
    backend = RedisBackend.from_url(redis_url)
    name = f"ttl-{uuid.uuid4().hex}"

    @idempotent(key="request_id", backend=backend, ttl=600, name=name)
    def pay(request_id: str) -> int:
        return 1

    pay(new_key())
    client = redis.Redis.from_url(redis_url)
    (record,) = [stored for stored in records(redis_url) if name.encode() in stored]
    assert 590_000 < client.pttl(record) <= 600_000
    assert client.exists(record + b":claim") == 0


def test_a_waiting_duplicate_in_another_thread_gets_the_value(redis_url: str) -> None:
    """Waiters are woken by the store (pub/sub), and get the stored value."""
    backend = RedisBackend.from_url(redis_url)
    release = threading.Event()
    runs: list[int] = []

    @idempotent(key="request_id", backend=backend, on_in_progress="wait")
    def pay(request_id: str) -> dict[str, str]:
        runs.append(1)
        release.wait(PATIENCE)
        return {"receipt": "r-1"}

    key = new_key()
    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(pay, key) for _ in range(8)]
        threading.Timer(0.3, release.set).start()
        assert [call.result(PATIENCE) for call in calls] == [{"receipt": "r-1"}] * 8
    assert runs == [1]


def test_a_reuse_is_a_conflict_even_while_the_first_call_runs(redis_url: str) -> None:
    """The claim names the running call's fingerprint: another payload conflicts at once."""
    backend = RedisBackend.from_url(redis_url)
    started, release = threading.Event(), threading.Event()

    @idempotent(key="request_id", backend=backend)
    def pay(request_id: str, cents: int) -> int:
        started.set()
        release.wait(PATIENCE)
        return cents

    key = new_key()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(pay, key, 1)
        assert started.wait(PATIENCE)
        with pytest.raises(IdempotencyConflictError):
            pay(key, 2)
        with pytest.raises(IdempotencyInProgressError):
            pay(key, 1)
        release.set()
        assert first.result(PATIENCE) == 1
    with pytest.raises(IdempotencyConflictError):
        pay(key, 2)


def test_a_tampered_record_is_refused_and_left_alone(redis_url: str) -> None:
    """A record the codec rejects is never returned, never executed again, never overwritten."""
    log = EventLog()
    resilient.configure(observers=[log])
    backend = RedisBackend.from_url(redis_url)
    name = f"tampered-{uuid.uuid4().hex}"
    runs: list[int] = []

    @idempotent(key="request_id", backend=backend, name=name)
    def pay(request_id: str) -> int:
        runs.append(1)
        return 1

    key = new_key()
    pay(key)
    client = redis.Redis.from_url(redis_url)
    (record,) = [stored for stored in records(redis_url) if name.encode() in stored]
    tampered = bytearray(client.get(record) or b"")
    tampered[-1] ^= 1
    client.set(record, bytes(tampered), px=60_000)
    with pytest.raises(IdempotencyRecordError):
        pay(key)
    assert client.get(record) == bytes(tampered)
    assert client.exists(record + b":claim") == 0  # the claim taken over it was given back
    assert runs == [1]
    assert log.of(StoredValueRejected)


def test_a_record_written_with_another_secret_is_refused(redis_url: str) -> None:
    """Two fleets with different codec secrets never replay each other's records."""
    ours = RedisBackend.from_url(redis_url, codec=Codec(secret="a" * 32))
    theirs = RedisBackend.from_url(redis_url, codec=Codec(secret="b" * 32))
    name = f"secret-{uuid.uuid4().hex}"
    key = new_key()

    def pay(request_id: str) -> int:
        return 1

    idempotent(key="request_id", backend=theirs, name=name)(pay)(key)
    with pytest.raises(IdempotencyRecordError):
        idempotent(key="request_id", backend=ours, name=name)(pay)(key)


def test_redis_down_at_claim_time_runs_nothing(fresh_redis: RedisServer) -> None:
    """No claim, no execution: BackendUnavailableError, and fail_open runs it, reported."""
    log = EventLog()
    resilient.configure(observers=[log])
    backend = RedisBackend.from_url(fresh_redis.url)
    runs: list[int] = []

    def pay(request_id: str) -> int:
        runs.append(1)
        return 1

    closed = idempotent(key="request_id", backend=backend)(pay)
    opened = idempotent(key="request_id", backend=backend, fail_open=True)(pay)
    fresh_redis.stop()
    for _ in range(5):
        with pytest.raises(BackendUnavailableError):
            closed(new_key())
    assert runs == []
    assert opened(new_key()) == 1
    assert runs == [1]
    assert len(log.of(IdempotencyBypassed)) == 1


def test_an_unstorable_value_keeps_the_key_claimed_for_ttl(redis_url: str) -> None:
    """A value the codec refuses is returned once; the key then stays in progress for ttl."""
    backend = RedisBackend.from_url(redis_url)
    name = f"unstorable-{uuid.uuid4().hex}"
    runs: list[int] = []

    @idempotent(key="request_id", backend=backend, name=name, ttl=300, lease_ttl=1)
    def pay(request_id: str) -> Any:
        runs.append(1)
        return threading.Lock()

    key = new_key()
    assert pay(key) is not None
    with pytest.raises(IdempotencyInProgressError):
        pay(key)
    client = redis.Redis.from_url(redis_url)
    (claim,) = list(client.scan_iter(f"*{name}*:claim"))  # the only key it left
    assert client.pttl(claim) > 200_000
    assert runs == [1]
