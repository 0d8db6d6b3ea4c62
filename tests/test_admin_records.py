"""`resilient.admin`: idempotency records listed by state, and purged.

On memory and on a real Redis, with records made by another Python process, and on a
Cluster, where a listing must walk every primary.
"""

from __future__ import annotations

import textwrap
import threading
import uuid

import pytest
import redis
from cache_support import PATIENCE, python_processes, run
from redis_fixtures import Backends
from redis_infra import RedisClusterProcesses

import resilient
from resilient.admin import Admin, RecordInfo, RecordState
from resilient.backends.redis import RedisBackend
from resilient.exceptions import IdempotencyRecordError, IdempotentFailureError


def unique(stem: str) -> str:
    """Return a function name no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


class Orders:
    """An idempotent function whose calls can be held running, and that fails on demand."""

    def __init__(self, name: str, backend: object = None) -> None:
        self.runs: list[str] = []
        self.release = threading.Event()
        self.started = threading.Event()

        @resilient.idempotent(key="request_id", store_errors=True, name=name, backend=backend)
        def create(request_id: str, *, hold: bool = False, fail: bool = False) -> str:
            self.runs.append(request_id)
            if hold:
                self.started.set()
                assert self.release.wait(PATIENCE)
            if fail:
                raise ValueError("declined")
            return f"order for {request_id}"

        self.create = create

    def one_of_each(self) -> threading.Thread:
        """Complete r1, fail r2, and leave r3 running in a thread (join it after release)."""
        self.create("r1")
        with pytest.raises(ValueError, match="declined"):
            self.create("r2", fail=True)
        running = threading.Thread(target=self.create, args=("r3",), kwargs={"hold": True})
        running.start()
        assert self.started.wait(PATIENCE)
        return running


def states(records: list[RecordInfo]) -> list[RecordState]:
    """The states of *records*, sorted by value."""
    return sorted((record.state for record in records), key=lambda state: state.value)


def test_records_are_listed_with_their_state_name_and_ttl() -> None:
    """A completed, a failed and a running call: three records, each in its state."""
    name = unique("orders")
    orders = Orders(name)
    running = orders.one_of_each()
    try:
        records = Admin().idempotency_records(name=name)
        assert [record.name for record in records] == [name] * 3
        assert states(records) == [
            RecordState.COMPLETED,
            RecordState.FAILED,
            RecordState.IN_PROGRESS,
        ]
        by_state = {record.state: record for record in records}
        assert by_state[RecordState.COMPLETED].ttl is not None
        assert 86_000 < by_state[RecordState.COMPLETED].ttl <= 86_400  # ttl= default
        in_progress = by_state[RecordState.IN_PROGRESS].ttl
        assert in_progress is not None
        assert 0 < in_progress <= 30  # the lease's
        assert len({record.id for record in records}) == 3
        only = Admin().idempotency_records("failed", name=name)
        assert [record.state for record in only] == [RecordState.FAILED]
        assert only[0].to_dict()["state"] == "failed"
    finally:
        orders.release.set()
        running.join(PATIENCE)


def test_purging_completed_records_lets_their_keys_execute_again() -> None:
    """After a purge of completed records, r1 runs again; the failed one is still replayed."""
    name = unique("orders")
    orders = Orders(name)
    running = orders.one_of_each()
    orders.release.set()
    running.join(PATIENCE)
    admin = Admin()
    assert admin.purge_idempotency(RecordState.COMPLETED, name=name) == 2  # r1, and r3 now
    assert states(admin.idempotency_records(name=name)) == [RecordState.FAILED]
    assert orders.create("r1") == "order for r1"
    assert orders.runs.count("r1") == 2
    with pytest.raises(IdempotentFailureError):
        orders.create("r2", fail=True)
    assert orders.runs.count("r2") == 1


def test_a_call_in_progress_is_never_purged() -> None:
    """Purging "in_progress" is refused, and so is a state that is none."""
    with pytest.raises(ValueError, match="duplicate"):
        Admin().purge_idempotency("in_progress")
    with pytest.raises(ValueError, match="'done' is none of"):
        Admin().purge_idempotency("done")
    with pytest.raises(ValueError, match="none of"):
        Admin().idempotency_records("done")


def test_names_keep_records_apart() -> None:
    """Filtering by name lists one function's records only; purging by name purges only them."""
    first, second = Orders(unique("first")), Orders(unique("second"))
    first.create("same-key")
    second.create("same-key")
    admin = Admin()
    purged = admin.purge_idempotency("completed", name=first.create.__wrapped__.__name__)
    assert purged == 0  # the function's own name is not the policy's name=
    names = [record.name for record in admin.idempotency_records()]
    (first_name,) = [each for each in names if each.startswith("first-")]
    assert admin.purge_idempotency("completed", name=first_name) == 1
    assert [record.name for record in admin.idempotency_records()] == [
        each for each in names if each != first_name
    ]


def test_the_async_twins_list_and_purge() -> None:
    """aidempotency_records and apurge_idempotency give what the sync methods give."""
    name = unique("async")
    orders = Orders(name)
    orders.create("r1")
    admin = Admin()

    async def main() -> tuple[list[RecordInfo], int, list[RecordInfo]]:
        return (
            await admin.aidempotency_records(name=name),
            await admin.apurge_idempotency("completed", name=name),
            await admin.aidempotency_records(name=name),
        )

    listed, purged, after = run(main())
    assert [record.state for record in listed] == [RecordState.COMPLETED]
    assert (purged, after) == (1, [])


# on Redis -----------------------------------------------------------------------------------

MAKER = textwrap.dedent(
    """
    import json, os, sys
    import resilient
    from resilient.backends.redis import RedisBackend

    backend = RedisBackend.from_url(sys.argv[1])

    @resilient.idempotent(key="request_id", name="payments", backend=backend)
    def charge(request_id):
        return {"charged": request_id}

    for number in range(5):  # keys of this process's own: never one another's in progress
        charge(f"req-{os.getpid()}-{number}")
    backend.close()
    print(json.dumps("made"))
    """
)


def test_records_made_by_other_processes_are_listed_and_purged(
    redis_url: str, backends: Backends
) -> None:
    """Two processes make five records each: ten listed here, purged here, gone."""
    with python_processes(MAKER, redis_url, count=2) as made:
        pass
    assert made == ["made", "made"]
    admin = Admin(backends(redis_url))
    records = admin.idempotency_records()
    assert [(record.name, record.state) for record in records] == [
        ("payments", RecordState.COMPLETED)
    ] * 10
    assert admin.purge_idempotency("completed") == 10
    assert admin.idempotency_records() == []


def test_an_unreadable_record_is_listed_and_purged_so_its_key_works_again(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """A record tampered with is "unreadable"; once purged, its key executes again."""
    backend = backends(redis_url)
    orders = Orders("tampered", backend)
    orders.create("r1")
    (key,) = [key.decode() for key in client.scan_iter(match="resilient:idempotent:*")]
    client.set(key, b"not a record", keepttl=True)
    with pytest.raises(IdempotencyRecordError):
        orders.create("r1")
    admin = Admin(backend)
    assert states(admin.idempotency_records()) == [RecordState.UNREADABLE]
    assert admin.purge_idempotency("unreadable") == 1
    assert orders.create("r1") == "order for r1"
    assert orders.runs == ["r1", "r1"]


def test_records_on_a_cluster_are_found_on_every_primary(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """Twenty records spread over a Cluster's slots: every one listed, every one purged."""
    backend = RedisBackend.cluster(redis_cluster.startup_nodes)
    try:
        orders = Orders("cluster", backend)
        for number in range(20):
            orders.create(f"r{number}")
        admin = Admin(backend)
        assert len(admin.idempotency_records("completed")) == 20
        assert admin.purge_idempotency("completed") == 20
        assert admin.idempotency_records() == []
    finally:
        backend.close()
