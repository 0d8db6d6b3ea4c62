"""`resilient.lock` on a real Redis shared by real processes: exclusion, fencing, ttl."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from cache_support import pause, python_processes
from redis_fixtures import Backends
from redis_infra import RedisServer, commands_sent

from resilient import lock
from resilient.backends.redis import RedisBackend
from resilient.exceptions import LockNotAcquiredError

# 4 processes x 8 holders x ROUNDS acquisitions of one name: the acceptance figure of 20,000.
PROCESSES, HOLDERS, ROUNDS = 4, 8, 625
ACQUISITIONS = PROCESSES * HOLDERS * ROUNDS

# What every holder does with each lease, in threads (HOLDER) or in tasks (ASYNC_HOLDER): a
# read-modify-write of a SQLite row that only accepts a write carrying a fencing token greater
# than the last one it accepted (the fenced resource of docs/lock.md), yielding to the other
# holders of its process in the middle. Each hold is reported as [entered, left, token, the
# token and count it read, whether its write was accepted]; `entered` is read after the lock
# was granted and `left` before it is given back, on CLOCK_MONOTONIC, which all processes of
# the machine share, so a recorded hold lies within the real one and two that overlap in the
# report overlapped on Redis. A holder's error is reported, not lost with its thread.
FENCED_WRITE = """
import json, sqlite3, sys, time
import resilient
from resilient.backends.redis import RedisBackend

url, path, holders, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# a process starved of CPU by its 31 rivals on a small machine must not count as Redis being
# unreachable: what is under test is exclusion, not latency
backend = RedisBackend.from_url(url, socket_timeout=30)
guard = resilient.lock("fenced", ttl=30, backend=backend)
holds, errors = [], []

def connect():
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")  # what is under test is isolation, not durability
    return db

def read(db):
    return db.execute("SELECT count, token FROM resource").fetchone()

def write(db, lease, count):
    return db.execute(
        "UPDATE resource SET count = ?, token = ? WHERE token < ?",
        (count + 1, lease.token, lease.token),
    ).rowcount == 1

def report():
    print(json.dumps({"holds": holds, "errors": errors}))
"""

HOLDER = (
    FENCED_WRITE
    + """
import threading

def work():
    db = connect()
    try:
        for _ in range(rounds):
            with guard as lease:
                entered = time.monotonic()
                count, seen = read(db)
                time.sleep(0)
                written = write(db, lease, count)
                left = time.monotonic()
            holds.append([entered, left, lease.token, seen, count, written])
    except Exception as error:
        errors.append(repr(error))
    finally:
        db.close()

threads = [threading.Thread(target=work) for _ in range(holders)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
report()
"""
)

ASYNC_HOLDER = (
    FENCED_WRITE
    + """
import asyncio

async def work(db):
    try:
        for _ in range(rounds):
            async with guard as lease:
                entered = time.monotonic()
                count, seen = read(db)
                await asyncio.sleep(0)
                written = write(db, lease, count)
                left = time.monotonic()
            holds.append([entered, left, lease.token, seen, count, written])
    except Exception as error:
        errors.append(repr(error))

async def main():
    db = connect()  # one connection: the tasks of the loop take turns with it
    try:
        await asyncio.gather(*(work(db) for _ in range(holders)))
    finally:
        db.close()

asyncio.run(main())
report()
"""
)


def fenced_resource(path: Path) -> None:
    """Create the SQLite row the holders write through: a count and the last token accepted."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE resource (count INTEGER, token INTEGER)")
    db.execute("INSERT INTO resource VALUES (0, 0)")
    db.commit()
    db.close()


def check_exclusive(results: list[dict[str, Any]], path: Path) -> None:
    """Assert the holds of every process never overlapped and wrote through the fence in turn."""
    assert [result["errors"] for result in results] == [[]] * PROCESSES
    holds = sorted(hold for result in results for hold in result["holds"])
    assert len(holds) == ACQUISITIONS
    overlaps = [(a, b) for a, b in itertools.pairwise(holds) if a[1] > b[0]]
    assert overlaps == [], f"{len(overlaps)} holds overlapped another, e.g. {overlaps[:3]}"
    tokens = [hold[2] for hold in holds]
    assert all(a < b for a, b in itertools.pairwise(tokens)), "tokens not increasing in time"
    refused = [hold for hold in holds if not hold[5]]
    assert refused == [], f"{len(refused)} writes refused as stale, e.g. {refused[:3]}"
    # each holder read what the one before it wrote: no update lost, none seen out of turn
    assert [hold[4] for hold in holds] == list(range(ACQUISITIONS))
    assert [hold[3] for hold in holds] == [0, *tokens[:-1]]
    db = sqlite3.connect(path)
    assert db.execute("SELECT count, token FROM resource").fetchone() == (ACQUISITIONS, tokens[-1])
    db.close()


@pytest.mark.parametrize("holder", [HOLDER, ASYNC_HOLDER], ids=["threads", "tasks"])
def test_twenty_thousand_holds_from_four_processes_never_overlap(
    holder: str, redis_url: str, tmp_path: Path
) -> None:
    """4 processes x 8 threads (or tasks) x 625 holds: none overlap, lost or fenced off."""
    path = tmp_path / "resource.sqlite"
    fenced_resource(path)
    args = (redis_url, str(path), str(HOLDERS), str(ROUNDS))
    started = time.monotonic()
    with python_processes(holder, *args, count=PROCESSES, timeout=600) as results:
        pass
    print(f"{ACQUISITIONS} acquisitions in {time.monotonic() - started:.1f} s")
    check_exclusive(results, path)


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


def test_the_fencing_counter_expires_and_tokens_keep_increasing_after(
    fresh_redis: RedisServer, backends: Backends
) -> None:
    """No key outlives a day of disuse: the counter expires, and starts again above the last."""
    guard = lock("idle", ttl=10, backend=backends(fresh_redis.url))
    with guard as before:
        pass
    server = redis.Redis.from_url(fresh_redis.url)
    (fence,) = server.keys("*:fence")  # a test may use KEYS; the library never does
    assert 86_399_000 < server.pttl(fence) <= 86_400_000
    assert server.delete(fence) == 1  # as if a day had passed
    with guard as after:
        pass
    assert after.token > before.token
    # only the new counter and the release's receipt: the lease and its token went with it
    receipt = guard._key() + ":unlocked"
    assert sorted(server.keys()) == sorted([fence, receipt.encode()])
    assert 0 < server.pttl(receipt) <= 10_000  # kept for a re-send of the release, no longer


def test_acquire_and_release_are_one_command_each(redis_url: str, backends: Backends) -> None:
    """An uncontended acquisition sends one EVALSHA, its release another."""
    guard = lock("counted", ttl=10, backend=backends(redis_url))
    with guard:
        pass  # loads the scripts
    with commands_sent(redis_url) as sent, guard:
        pass
    assert sent == ["EVALSHA", "EVALSHA"]


def test_one_caller_per_process_waits_on_redis_for_a_lock(
    redis_url: str, backends: Backends
) -> None:
    """16 threads queueing for one lock: a release wakes one of them on Redis, not all 16.

    Each wait on Redis looks at the lock once (a PTTL) before it listens; with every thread
    waiting there on its own, each release would cost a PTTL and a lock request per waiter.
    """
    guard = lock("queued", ttl=10, timeout=30, backend=backends(redis_url))
    taken: list[int] = []

    def take() -> None:
        with guard as lease:
            taken.append(lease.token)
            pause(0.005)

    with guard:
        pass  # loads the scripts
    with commands_sent(redis_url) as sent:
        with guard:  # the 16 queue behind this holder
            threads = [threading.Thread(target=take) for _ in range(16)]
            for thread in threads:
                thread.start()
            pause(0.3)
        for thread in threads:
            thread.join()
    assert taken == sorted(taken)
    assert len(taken) == 16
    # one look per turn (two when a channel's subscription is new), not one per waiter
    assert sent.count("PTTL") <= 2 * 16, sent.count("PTTL")
    # each thread asks once on arrival, then about once per turn
    assert sent.count("EVALSHA") <= 2 + 16 * 4, sent.count("EVALSHA")


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
