"""`resilient.idempotent` on the in-memory backend: one execution per key, replays, conflicts."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, run, together

import resilient
from resilient import IdempotencyPolicy, idempotent
from resilient.backends import MemoryBackend
from resilient.events import (
    IdempotencyClaimed,
    IdempotencyConflicted,
    IdempotencyInProgress,
    IdempotencyNotStored,
    IdempotencyRenewed,
    IdempotencyReplayed,
    IdempotencyTakenOver,
)
from resilient.exceptions import (
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyRecordError,
    IdempotentFailureError,
)


def new_key() -> str:
    return f"req-{uuid.uuid4()}"


# replaying -------------------------------------------------------------------------------------


def test_a_second_call_replays_the_first_result_without_running() -> None:
    """The first call with a key runs; later calls with it get the stored value back."""
    runs: list[str] = []

    @idempotent(key="request_id")
    def create_order(request_id: str, cents: int) -> dict[str, object]:
        runs.append(request_id)
        return {"order": len(runs), "cents": cents}

    key = new_key()
    first = create_order(key, 500)
    assert create_order(key, 500) == first
    assert create_order(request_id=key, cents=500) == first
    assert runs == [key]
    assert create_order(new_key(), 500) == {"order": 2, "cents": 500}


def test_async_calls_replay_too() -> None:
    """An async function runs once per key; awaiting it again replays."""

    async def scenario() -> None:
        runs: list[str] = []

        @idempotent(key="request_id")
        async def charge(request_id: str, cents: int) -> int:
            runs.append(request_id)
            await asyncio.sleep(0)
            return cents * 2

        key = new_key()
        assert await charge(key, 21) == 42
        assert await charge(key, 21) == 42
        assert runs == [key]

    run(scenario())


def test_methods_key_on_their_arguments_not_the_instance() -> None:
    """A decorated method's payload leaves ``self`` out: two instances share the record."""
    runs: list[str] = []

    class Payments:
        @idempotent(key="request_id")
        def charge(self, request_id: str, cents: int) -> int:
            runs.append(request_id)
            return cents

    key = new_key()
    assert Payments().charge(key, 7) == 7
    assert Payments().charge(key, 7) == 7
    assert Payments.charge(Payments(), key, 7) == 7
    assert runs == [key]


def test_callables_on_methods_get_the_arguments_without_self() -> None:
    """``key=``, ``principal=`` and ``payload=`` callables see a method's arguments, no ``self``."""
    seen: list[tuple[Any, ...]] = []

    def key(request_id: str, cents: int) -> str:
        seen.append((request_id, cents))
        return request_id

    class Payments:
        @idempotent(key=key, principal=lambda request_id, cents: "acme", payload=lambda *a: a)
        def charge(self, request_id: str, cents: int) -> int:
            return cents

        @idempotent(key=key, principal=lambda request_id, cents: "acme", payload=lambda *a: a)
        async def acharge(self, request_id: str, cents: int) -> int:
            return cents

    first, second = new_key(), new_key()
    assert Payments().charge(first, 1) == 1
    assert Payments.charge(Payments(), first, 1) == 1
    assert run(Payments().acharge(second, 2)) == 2
    assert seen == [(first, 1), (first, 1), (second, 2)]


def test_a_callable_key_reads_it_from_the_arguments() -> None:
    """``key=`` may be a callable taking the function's arguments."""
    runs: list[dict[str, str]] = []

    @idempotent(key=lambda request: request["headers"]["Idempotency-Key"])
    def handle(request: dict[str, Any]) -> int:
        runs.append(request["headers"])
        return len(runs)

    request = {"headers": {"Idempotency-Key": new_key()}, "body": "x"}
    assert handle(request) == 1
    assert handle(dict(request)) == 1
    assert len(runs) == 1


# conflicts ------------------------------------------------------------------------------------


def test_the_same_key_with_another_payload_conflicts_and_never_runs() -> None:
    """A key reused with different arguments raises IdempotencyConflictError, every time."""
    runs: list[int] = []
    log = EventLog()
    resilient.configure(observers=[log])

    @idempotent(key="request_id")
    def pay(request_id: str, cents: int) -> int:
        runs.append(cents)
        return cents

    key = new_key()
    pay(key, 100)
    for cents in range(101, 201):
        with pytest.raises(IdempotencyConflictError):
            pay(key, cents)
    assert runs == [100]
    assert len(log.of(IdempotencyConflicted)) == 100


def test_payload_names_what_must_match() -> None:
    """With ``payload=``, arguments outside it may differ between duplicates."""
    runs: list[str] = []

    @idempotent(key="request_id", payload=["cents"])
    def pay(request_id: str, cents: int, trace: str) -> int:
        runs.append(trace)
        return cents

    key = new_key()
    assert pay(key, 5, trace="a") == 5
    assert pay(key, 5, trace="b") == 5
    with pytest.raises(IdempotencyConflictError):
        pay(key, 6, trace="a")
    assert runs == ["a"]


def test_a_duplicate_with_another_payload_conflicts_while_the_first_runs() -> None:
    """The running call's claim carries its fingerprint: a reuse is a conflict, not in progress."""
    started, release = threading.Event(), threading.Event()

    @idempotent(key="request_id", on_in_progress="wait")
    def pay(request_id: str, cents: int) -> int:
        started.set()
        release.wait(PATIENCE)
        return cents

    key = new_key()
    first = ThreadPoolExecutor(1).submit(pay, key, 1)
    assert started.wait(PATIENCE)
    with pytest.raises(IdempotencyConflictError):
        pay(key, 2)
    release.set()
    assert first.result(PATIENCE) == 1


# principals -----------------------------------------------------------------------------------


def test_principals_scope_keys() -> None:
    """The same key from two principals makes two independent records."""
    runs: list[str] = []

    @idempotent(key="request_id", principal=lambda user, request_id, cents: user)
    def pay(user: str, request_id: str, cents: int) -> str:
        runs.append(user)
        return f"{user}:{cents}"

    key = new_key()
    assert pay("alice", key, 5) == "alice:5"
    assert pay("bob", key, 7) == "bob:7"  # another principal: no conflict, its own run
    assert pay("alice", key, 5) == "alice:5"
    assert runs == ["alice", "bob"]


def test_a_principal_of_none_is_refused() -> None:
    """A principal callable that gives nothing is a key error: records must not mix tenants."""

    @idempotent(key="request_id", principal=lambda request_id: None)
    def pay(request_id: str) -> int:
        raise AssertionError("never runs")

    with pytest.raises(IdempotencyKeyError, match="principal"):
        pay(new_key())


# keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "None"),
        ("", "empty"),
        ("x" * 256, "256 characters"),
        ("line\nbreak", "printable"),
        (42, "string"),
    ],
)
def test_bad_keys_raise_a_typed_error_before_anything_runs(key: object, problem: str) -> None:
    """A missing, empty, overlong, unprintable or non-string key raises IdempotencyKeyError."""

    @idempotent(key="request_id")
    def pay(request_id: Any) -> int:
        raise AssertionError("never runs")

    with pytest.raises(IdempotencyKeyError, match=problem) as raised:
        pay(key)
    assert isinstance(raised.value, ValueError)


def test_a_key_of_255_printable_characters_is_fine() -> None:
    """The longest key allowed works."""

    @idempotent(key="request_id")
    def pay(request_id: str) -> int:
        return len(request_id)

    assert pay("k" * 255) == 255


# concurrency ----------------------------------------------------------------------------------


def test_concurrent_duplicates_are_refused_while_the_first_runs() -> None:
    """By default, a duplicate of a running call raises IdempotencyInProgressError."""
    runs: list[str] = []
    release = threading.Event()
    log = EventLog()
    resilient.configure(observers=[log])

    @idempotent(key="request_id")
    def pay(request_id: str) -> int:
        runs.append(request_id)
        release.wait(PATIENCE)
        return 1

    key = new_key()
    threading.Timer(0.3, release.set).start()
    results = together(16, lambda: pay(key))
    assert runs == [key]
    assert results.count(1) == 1
    refused = [result for result in results if result != 1]
    assert len(refused) == 15
    assert all(isinstance(result, IdempotencyInProgressError) for result in refused)
    assert [event.waiting for event in log.of(IdempotencyInProgress)] == [False] * 15
    assert pay(key) == 1  # once it is stored, a replay


def test_waiting_duplicates_get_the_first_result() -> None:
    """With ``on_in_progress="wait"``, duplicates wait for the first call and get its value."""
    runs: list[str] = []
    release = threading.Event()

    @idempotent(key="request_id", on_in_progress="wait")
    def pay(request_id: str) -> dict[str, int]:
        runs.append(request_id)
        release.wait(PATIENCE)
        return {"receipt": 9}

    key = new_key()
    threading.Timer(0.3, release.set).start()
    assert together(16, lambda: pay(key)) == [{"receipt": 9}] * 16
    assert runs == [key]


def test_waiting_tasks_get_the_first_result() -> None:
    """Tasks of one loop wait for the first call's outcome too."""

    async def scenario() -> None:
        runs: list[str] = []
        release = asyncio.Event()

        @idempotent(key="request_id", on_in_progress="wait")
        async def pay(request_id: str) -> int:
            runs.append(request_id)
            await release.wait()
            return 3

        key = new_key()
        calls = [asyncio.ensure_future(pay(key)) for _ in range(50)]
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.gather(*calls) == [3] * 50
        assert runs == [key]

    run(scenario())


def test_a_wait_gives_up_after_wait_timeout() -> None:
    """A duplicate waits at most ``wait_timeout``, then raises IdempotencyInProgressError."""
    started, release = threading.Event(), threading.Event()

    @idempotent(key="request_id", on_in_progress="wait", wait_timeout=0.2)
    def pay(request_id: str) -> int:
        started.set()
        release.wait(PATIENCE)
        return 1

    key = new_key()
    first = ThreadPoolExecutor(1).submit(pay, key)
    assert started.wait(PATIENCE)
    with pytest.raises(IdempotencyInProgressError) as raised:
        pay(key)
    assert 0.2 <= raised.value.waited < 0.2 + 0.5
    release.set()
    assert first.result(PATIENCE) == 1


# errors ---------------------------------------------------------------------------------------


def test_by_default_an_exception_frees_the_key_for_a_retry() -> None:
    """An exception is not stored: the next call with the key runs again (Powertools)."""
    attempts: list[int] = []

    @idempotent(key="request_id")
    def pay(request_id: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("upstream down")
        return "paid"

    key = new_key()
    with pytest.raises(ConnectionError):
        pay(key)
    assert pay(key) == "paid"
    assert pay(key) == "paid"
    assert len(attempts) == 2


def test_store_errors_replays_the_first_failure() -> None:
    """With ``store_errors=True`` the failure is stored; replays raise IdempotentFailureError."""
    attempts: list[int] = []

    @idempotent(key="request_id", store_errors=True)
    def pay(request_id: str) -> str:
        attempts.append(1)
        raise ValueError("card declined")

    key = new_key()
    with pytest.raises(ValueError, match="card declined"):
        pay(key)
    for _ in range(3):
        with pytest.raises(IdempotentFailureError) as replayed:
            pay(key)
        assert replayed.value.error_type == "ValueError"
        assert replayed.value.detail == "card declined"
    assert len(attempts) == 1


def test_store_errors_may_name_which_exceptions_are_stored() -> None:
    """Named types are stored; other exceptions free the key."""

    class Declined(Exception):
        pass

    attempts: list[str] = []

    @idempotent(key="request_id", store_errors=(Declined,))
    def pay(request_id: str, outcome: str) -> str:
        attempts.append(outcome)
        if outcome == "declined":
            raise Declined("no funds")
        raise TimeoutError("slow")

    declined, timed_out = new_key(), new_key()
    with pytest.raises(Declined):
        pay(declined, "declined")
    with pytest.raises(IdempotentFailureError, match="no funds"):
        pay(declined, "declined")
    with pytest.raises(TimeoutError):
        pay(timed_out, "timeout")
    with pytest.raises(TimeoutError):
        pay(timed_out, "timeout")
    assert attempts == ["declined", "timeout", "timeout"]


def test_a_cancelled_call_frees_its_key_and_stores_nothing() -> None:
    """Cancellation is never stored, even with ``store_errors=True``: the key is free again."""

    async def scenario() -> None:
        started = asyncio.Event()
        runs: list[int] = []

        @idempotent(key="request_id", store_errors=True)
        async def pay(request_id: str) -> int:
            runs.append(1)
            started.set()
            await asyncio.sleep(60 if len(runs) == 1 else 0)
            return len(runs)

        key = new_key()
        task = asyncio.ensure_future(pay(key))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pay(key) == 2
        assert await pay(key) == 2

    run(scenario())


def test_a_waiting_duplicate_takes_over_when_the_first_call_fails() -> None:
    """The first call raised and freed the key: one waiting duplicate runs it, reported."""
    started, release = threading.Event(), threading.Event()
    log = EventLog()
    resilient.configure(observers=[log])
    attempts: list[int] = []

    @idempotent(key="request_id", on_in_progress="wait")
    def pay(request_id: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            started.set()
            release.wait(PATIENCE)
            raise ConnectionError("first attempt failed")
        return "paid"

    key = new_key()
    first = ThreadPoolExecutor(1).submit(pay, key)
    assert started.wait(PATIENCE)
    second = ThreadPoolExecutor(1).submit(pay, key)
    log.wait_for(IdempotencyInProgress)
    release.set()
    with pytest.raises(ConnectionError):
        first.result(PATIENCE)
    assert second.result(PATIENCE) == "paid"
    assert len(attempts) == 2
    assert len(log.of(IdempotencyTakenOver)) == 1


def test_a_value_the_backend_cannot_store_keeps_the_key_claimed() -> None:
    """An outcome that cannot be stored is returned, reported, and never executed again."""
    log = EventLog()
    resilient.configure(observers=[log])
    backend = _RefusingBackend()
    runs: list[int] = []

    @idempotent(key="request_id", backend=backend)
    def pay(request_id: str) -> object:
        runs.append(1)
        return object()

    key = new_key()
    assert pay(key) is not None
    assert [event.reason for event in log.of(IdempotencyNotStored)] == ["unencodable"]
    with pytest.raises(IdempotencyInProgressError):
        pay(key)
    assert runs == [1]


class _RefusingBackend(MemoryBackend):
    """A memory backend whose codec refuses anything but plain data, as a shared one would."""

    def put(self, key: str, value: object, **options: Any) -> bool:
        if not _plain(value):
            raise TypeError(f"cannot store {value!r}")
        return super().put(key, value, **options)


def _plain(value: object) -> bool:
    if isinstance(value, tuple | list):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool | bytes)


def test_a_record_that_is_not_ours_is_never_returned() -> None:
    """Something else stored under the key is refused, not replayed and not overwritten."""
    backend = MemoryBackend()
    runs: list[int] = []

    @idempotent(key="request_id", backend=backend, name="orders")
    def pay(request_id: str) -> int:
        runs.append(1)
        return 1

    key = new_key()
    pay(key)
    (stored,) = [k for k in backend._store.data if isinstance(k, str) and "orders" in k]
    backend.put(stored, "not a record", ttl=60)
    with pytest.raises(IdempotencyRecordError):
        pay(key)
    assert backend.get(stored).value == "not a record"
    assert runs == [1]


# the local replay cache -----------------------------------------------------------------------


def test_local_ttl_replays_from_the_process_without_the_backend() -> None:
    """With ``local_ttl``, replays are served from this process and say so."""
    log = EventLog()
    resilient.configure(observers=[log])
    backend = _CountingBackend()

    @idempotent(key="request_id", backend=backend, local_ttl=60)
    def pay(request_id: str) -> int:
        return 5

    key = new_key()
    assert pay(key) == 5
    gets = backend.gets
    for _ in range(10):
        assert pay(key) == 5
    assert backend.gets == gets
    assert [event.local for event in log.of(IdempotencyReplayed)] == [True] * 10


class _CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, key: str, **options: Any) -> Any:
        self.gets += 1
        return super().get(key, **options)


# leases ---------------------------------------------------------------------------------------


def test_a_slow_call_keeps_its_key_by_renewing_its_lease() -> None:
    """A call running longer than ``lease_ttl`` is renewed, never taken over."""
    log = EventLog()
    resilient.configure(observers=[log])
    release = threading.Event()
    runs: list[int] = []

    @idempotent(key="request_id", lease_ttl=0.15)
    def pay(request_id: str) -> int:
        runs.append(1)
        release.wait(PATIENCE)
        return 1

    key = new_key()
    first = ThreadPoolExecutor(1).submit(pay, key)
    log.wait_for(IdempotencyRenewed, count=4)  # 0.2 s at least: past the lease_ttl
    with pytest.raises(IdempotencyInProgressError):
        pay(key)
    release.set()
    assert first.result(PATIENCE) == 1
    assert runs == [1]
    assert len(log.of(IdempotencyClaimed)) == 1


def test_a_slow_task_keeps_its_key_by_renewing_its_lease() -> None:
    """An async call renews from its loop's renewer task, and is not taken over either."""
    log = EventLog()
    resilient.configure(observers=[log])
    runs: list[int] = []

    @idempotent(key="request_id", lease_ttl=0.15, on_in_progress="wait")
    async def pay(request_id: str) -> int:
        runs.append(1)
        for _ in range(int(PATIENCE / 0.01)):  # 4 renewals: 0.2 s, past the lease_ttl
            if len(log.of(IdempotencyRenewed)) >= 4:
                break
            await asyncio.sleep(0.01)
        return len(runs)

    async def scenario() -> list[int]:
        key = new_key()
        return list(await asyncio.gather(*(pay(key) for _ in range(5))))

    assert run(scenario()) == [1] * 5
    assert runs == [1]


# decoration -----------------------------------------------------------------------------------


def test_a_key_naming_no_parameter_is_refused_at_decoration() -> None:
    """``key=`` must name a parameter of the function."""
    with pytest.raises(ValueError, match="no parameter 'request'"):

        @idempotent(key="request")
        def pay(request_id: str) -> None: ...


def test_a_payload_naming_the_key_is_refused_at_decoration() -> None:
    """The payload is what must match for one key, so it leaves the key out."""
    with pytest.raises(ValueError, match="names the key parameter"):

        @idempotent(key="request_id", payload=["request_id", "cents"])
        def pay(request_id: str, cents: int) -> None: ...


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, TypeError, "key"),
        ({"key": 3}, TypeError, "parameter"),
        ({"key": "id", "ttl": 0}, ValueError, "ttl"),
        ({"key": "id", "lease_ttl": -1}, ValueError, "lease_ttl"),
        ({"key": "id", "on_in_progress": "block"}, ValueError, "on_in_progress"),
        ({"key": "id", "store_errors": KeyboardInterrupt}, TypeError, "never be stored"),
        ({"key": "id", "store_errors": ValueError("x")}, TypeError, "instance"),
        ({"key": "id", "payload": "cents"}, TypeError, "payload"),
        ({"key": "id", "principal": "tenant"}, TypeError, "principal"),
        ({"key": "id", "backend": object()}, TypeError, "backend"),
        ({"key": "id", "local_maxsize": 0}, ValueError, "maxsize"),
        ({"key": "id", "retries": 3}, TypeError, "unknown keyword"),
    ],
)
def test_bad_settings_raise_at_decoration(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Nonsense settings raise a typed error before any function is decorated."""
    with pytest.raises(error, match=match):
        idempotent(**options)


def test_a_policy_object_and_keywords_combine() -> None:
    """``@idempotent(IdempotencyPolicy(...), ttl=...)`` evolves the policy."""
    policy = IdempotencyPolicy(key="request_id", ttl=60)

    @idempotent(policy, lease_ttl=5)
    def pay(request_id: str) -> int:
        return 1

    assert pay(new_key()) == 1
