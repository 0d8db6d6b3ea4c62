"""`resilient.admin`: held locks listed by name, and released by force, token-checked.

The holder of a lock released by force must learn that it lost it; the cross-process test
holds the lock in another Python process on a real Redis, and releases it from this one.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import pytest
from admin_support import HOLDER
from cache_support import PATIENCE, EventLog, eventually, run, running
from redis_fixtures import Backends
from redis_infra import RedisClusterProcesses, commands_sent

import resilient
from resilient.admin import Admin, LockInfo
from resilient.backends import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.events import LockForceReleased, LockLost
from resilient.exceptions import LockLostError, NotFoundError

HOST = socket.gethostname()
HERE = f"{HOST}:{os.getpid()}"


def unique(stem: str) -> str:
    """Return a lock name no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def test_a_held_lock_is_listed_with_its_holder_token_and_ttl() -> None:
    """A lease held is listed by the lock's name, its fencing token, this process, its ttl."""
    name = unique("sheets-sync")
    with resilient.lock(name, ttl=30) as lease:
        (info,) = Admin().locks()
        assert (info.name, info.token, info.holder) == (name, lease.token, HERE)
        assert 29 < info.ttl <= 30
    assert Admin().locks() == []


def test_locks_are_sorted_by_name_and_dicts_are_json() -> None:
    """Several held locks come by name; to_dict() gives JSON types."""
    names = [unique("b"), unique("a"), unique("c")]
    held = [resilient.lock(name, ttl=30) for name in names]
    for guard in held:
        guard.__enter__()
    try:
        listed = Admin().locks()
        assert [info.name for info in listed] == sorted(names)
        assert json.loads(json.dumps([info.to_dict() for info in listed]))[0]["name"] == min(names)
    finally:
        for guard in held:
            guard.__exit__(None, None, None)


def test_a_release_by_force_frees_the_lock_and_the_holder_learns_it_lost_it(
    log: EventLog,
) -> None:
    """The lease goes to the next caller; leaving the holder's block raises LockLostError."""
    name = unique("nightly")
    guard = resilient.lock(name, ttl=30)
    lease = guard.__enter__()
    released = Admin().release_lock(name, lease.token)
    assert released == LockInfo(name=name, token=lease.token, holder=HERE, ttl=released.ttl)
    with resilient.lock(name, ttl=30, timeout=0) as next_lease:
        assert next_lease.token > lease.token
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)
    (event,) = log.of(LockForceReleased)
    assert (event.policy, event.token, event.holder) == (name, lease.token, HERE)
    assert len(log.of(LockLost)) == 1


def test_a_renewing_holder_learns_at_its_next_renewal() -> None:
    """renew=True: within a third of the ttl, lease.lost turns true and on_lost runs."""
    name = unique("reindex")
    lost = threading.Event()
    guard = resilient.lock(name, ttl=0.6, renew=True, on_lost=lambda lease: lost.set())
    lease = guard.__enter__()
    Admin().release_lock(name, lease.token)
    assert lost.wait(PATIENCE)
    assert lease.lost
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)


def test_another_token_releases_nothing() -> None:
    """A token that is not the holder's (an older lease's, say) leaves the holder alone."""
    name = unique("payroll")
    with resilient.lock(name, ttl=30) as lease:
        with pytest.raises(NotFoundError, match=f"fencing token {lease.token}, not"):
            Admin().release_lock(name, lease.token - 1)
        assert [info.token for info in Admin().locks()] == [lease.token]
        assert not lease.lost
    with pytest.raises(NotFoundError, match="is not held") as caught:
        Admin().release_lock(name, lease.token)
    assert (caught.value.kind, caught.value.name) == ("lock", name)


def test_a_token_must_be_an_int() -> None:
    """A token given as text (or True) is a TypeError, before anything is read."""
    with pytest.raises(TypeError, match="fencing token"):
        Admin().release_lock("any", "7")  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="fencing token"):
        Admin().release_lock("any", token=True)


def test_the_async_twins_list_and_release() -> None:
    """alocks and arelease_lock, from a task, on a lock held in the same loop."""
    name = unique("async")

    async def main() -> tuple[list[LockInfo], LockInfo, bool]:
        admin = Admin()
        try:
            async with resilient.lock(name, ttl=30) as lease:
                listed = await admin.alocks()
                released = await admin.arelease_lock(name, lease.token)
        except LockLostError:
            return listed, released, True
        return listed, released, False

    listed, released, lost = run(main())
    assert [info.name for info in listed] == [name]
    assert released.name == name
    assert lost


def test_locks_are_listed_per_backend_and_namespace() -> None:
    """A lock on another backend, or in another namespace, is not listed."""
    other = MemoryBackend()
    name = unique("elsewhere")
    with resilient.lock(name, ttl=30, backend=other):
        assert Admin().locks() == []
        assert [info.name for info in Admin(other).locks()] == [name]
        assert Admin(other, namespace="billing").locks() == []


# across processes on Redis -----------------------------------------------------------------


def test_a_lock_held_by_another_process_is_released_and_its_holder_learns_it(
    redis_url: str, backends: Backends
) -> None:
    """Listed with the other process as holder; released by token; it hears of the loss."""
    name = unique("sheets-sync")
    admin = Admin(backends(redis_url))
    with running(HOLDER, redis_url, name) as holder:
        assert holder.stdout is not None
        lease = json.loads(holder.stdout.readline())
        token, pid = lease["token"], lease["pid"]
        (info,) = admin.locks()
        assert (info.name, info.token, info.holder) == (name, token, f"{HOST}:{pid}")
        released_at = time.monotonic()
        assert admin.release_lock(name, token).token == token
        assert holder.stdout.readline().strip() == "lost"
        heard = time.monotonic() - released_at
        assert holder.stdout.readline().strip() == "LockLostError"
        assert holder.wait(PATIENCE) == 0
    assert heard < 1.5 / 3 + 1.0  # its next renewal, plus room for a loaded machine
    assert admin.locks() == []


def test_acquire_release_and_renew_stay_one_command_each(
    redis_url: str, backends: Backends
) -> None:
    """The owner id naming holder and lock costs no command: one EVALSHA each."""
    backend = backends(redis_url)
    guard = resilient.lock(unique("counted"), ttl=30, backend=backend)
    with guard as lease:
        backend.extend(guard._key(), lease.owner, 30)  # connects, and loads the scripts
    with commands_sent(redis_url) as sent, guard as lease:
        assert backend.extend(guard._key(), lease.owner, 30)
    assert sent == ["EVALSHA", "EVALSHA", "EVALSHA"]


def test_locks_on_a_cluster_are_found_on_every_primary(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """Ten locks held on a Cluster: every one listed; one released by force."""
    backend = RedisBackend.cluster(redis_cluster.startup_nodes)
    names = sorted(unique("cluster") for _ in range(10))
    guards = [resilient.lock(name, ttl=30, backend=backend) for name in names]
    leases = [guard.__enter__() for guard in guards]
    try:
        admin = Admin(backend)
        assert [info.name for info in admin.locks()] == names
        assert admin.release_lock(names[4], leases[4].token).name == names[4]
        assert eventually(lambda: len(admin.locks()) == 9)
    finally:
        for index, guard in enumerate(guards):
            if index == 4:
                with pytest.raises(LockLostError):
                    guard.__exit__(None, None, None)
            else:
                guard.__exit__(None, None, None)
        backend.close()
