"""`resilient.lock` on a real Redis shared by real processes: exclusion, fencing, ttl."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cache_support import python_processes
from redis_fixtures import Backends
from redis_infra import RedisServer, commands_sent

from resilient import lock
from resilient.backends.redis import RedisBackend
from resilient.exceptions import LockNotAcquiredError

# Each process takes the lock argv[3] times in each of 8 threads and, holding it, does a
# read-modify-write of a SQLite row that only accepts a write carrying a fencing token greater
# than the last one it accepted (the fenced resource of docs/lock.md).
HOLDER = """
import json, sqlite3, sys, threading, time
import resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import LockNotAcquiredError

url, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
guard = resilient.lock("fenced", ttl=10, timeout=60, backend=RedisBackend.from_url(url))
stale = 0
lock = threading.Lock()

def work():
    global stale
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    for _ in range(rounds):
        with guard as lease:
            (count,) = db.execute("SELECT count FROM resource").fetchone()
            time.sleep(0)
            written = db.execute(
                "UPDATE resource SET count = ?, token = ? WHERE token < ?",
                (count + 1, lease.token, lease.token),
            ).rowcount
            if not written:
                with lock:
                    stale += 1
    db.close()

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"stale": stale}))
"""


def test_four_processes_of_eight_threads_never_hold_the_lock_together(
    redis_url: str, tmp_path: Path
) -> None:
    """4 x 8 threads x 60 rounds on one name: no lost update, no write refused as stale."""
    path = tmp_path / "resource.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE resource (count INTEGER, token INTEGER)")
    db.execute("INSERT INTO resource VALUES (0, 0)")
    db.commit()
    with python_processes(HOLDER, redis_url, str(path), "60", count=4, timeout=240) as results:
        pass
    count, token = db.execute("SELECT count, token FROM resource").fetchone()
    db.close()
    assert [result["stale"] for result in results] == [0] * 4
    assert count == 4 * 8 * 60  # every read-modify-write was alone: no update lost
    assert token > 0


def test_fencing_tokens_keep_increasing_across_a_restart_without_persistence(
    fresh_redis: RedisServer, backends: Backends
) -> None:
    """Redis restarted empty: the counter starts again from the server's time, above the last."""
    guard = lock("restarted", ttl=10, backend=backends(fresh_redis.url))
    with guard as before:
        pass
    fresh_redis.kill()
    fresh_redis.restart()
    with guard as after:
        pass
    assert after.token > before.token


def test_acquire_and_release_are_one_command_each(redis_url: str, backends: Backends) -> None:
    """An uncontended acquisition sends one EVALSHA, its release another."""
    guard = lock("counted", ttl=10, backend=backends(redis_url))
    with guard:
        pass  # loads the scripts
    with commands_sent(redis_url) as sent, guard:
        pass
    assert sent == ["EVALSHA", "EVALSHA"]


def test_a_lock_held_by_a_dead_process_is_free_after_its_ttl(redis_url: str) -> None:
    """A process that dies holding the lock keeps others out for its ttl at most."""
    script = """
import os, sys, resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import LockNotAcquiredError
with resilient.lock("orphaned", ttl=0.5, backend=RedisBackend.from_url(sys.argv[1])):
    print('{"held": true}', flush=True)
    os._exit(0)
"""
    with python_processes(script, redis_url, count=1):
        pass
    backend = RedisBackend.from_url(redis_url)
    try:
        with pytest.raises(LockNotAcquiredError):  # the dead holder's lease still runs
            lock("orphaned", ttl=5, timeout=0.1, backend=backend).__enter__()
        with lock("orphaned", ttl=5, timeout=2, backend=backend) as lease:
            assert lease.token > 0
    finally:
        backend.close()
