"""`@idempotent` on real Redis servers, called by a fleet of real processes, threads and tasks.

The acceptance tests of the idempotency issue: 16,000 calls of 2,000 keys from 4 processes
execute each key once and hand every duplicate the first call's outcome; a process killed
mid-execution holds its key for the rest of its lease and no longer; a live execution that
outlasts its lease is never taken over; a key reused with another payload is refused, while
its first call runs and after; a Redis out of reach at claim time executes nothing
(everything, with ``fail_open``). Besides, what a process under load needs: many leases kept
at once, many calls at once, and a record that a late execution does not replace.

Each child process prints what its calls got as JSON; what was executed is counted where no
process can misreport it, in Redis or in a SQLite ledger.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from cache_support import PATIENCE, EventLog, eventually, pause, python_processes, running
from redis_fixtures import Backends
from redis_infra import FaultProxyFactory, RedisServer

from resilient import idempotent
from resilient.events import BackendFailed, IdempotencyBypassed, IdempotencyLeaseLost
from resilient.exceptions import (
    BackendUnavailableError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
)

Outcome = list[Any]
"""What one call got, as a child reports it: [key, "value", value] or [key, error, message]."""


def outcomes_of(results: list[dict[str, Any]]) -> list[Outcome]:
    """Return the outcomes every child process reported, in one list."""
    return [outcome for result in results for outcome in result["outcomes"]]


def events_of(results: list[dict[str, Any]]) -> collections.Counter[str]:
    """Return how many events of each kind the child processes saw, all together."""
    total: collections.Counter[str] = collections.Counter()
    for result in results:
        total.update(result["events"])
    return total


# Shared by the child scripts: a plain client for the test's own bookkeeping (`control`), a
# backend that a process starved of CPU by its rivals on a small machine does not take for
# an unreachable Redis (what is under test is one execution per key, not latency), the
# process's number (0, 1, ... in the order they came), a count of the events it saw, and a
# meeting point: `meet(name)` returns once every one of `processes` processes came to it.
PRELUDE = """
import asyncio, collections, itertools, json, os, random, sqlite3, sys, threading, time
import redis, resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import IdempotencyInProgressError

url, processes = sys.argv[1], int(sys.argv[2])
control = redis.Redis.from_url(url, socket_timeout=300)  # outlasts its BLPOPs' own timeouts
backend = RedisBackend.from_url(url, socket_timeout=30)
me = control.incr("processes") - 1
events = collections.Counter()
counting = threading.Lock()


def count(event):
    with counting:
        events[event.kind] += 1


resilient.configure(observers=[count])


def meet(name):
    # the last process to come lets every one go
    if control.incr(f"meet:{name}") == processes:
        control.rpush(f"go:{name}", *[1] * processes)
    assert control.blpop([f"go:{name}"], timeout=120), f"{name}: a process never came"


def failed(key, error):
    return [key, type(error).__name__, str(error)]
"""


# --- 16,000 calls from a fleet: one execution per key -------------------------------------------

PROCESSES, WORKERS = 4, 16  # processes, and callers (threads or tasks) in each
KEYS, COPIES = 2_000, 8  # distinct keys, and calls of each key at once
CALLS = KEYS * COPIES
HOLD = 0.02  # seconds an execution lasts after writing the ledger, so that duplicates overlap

# In each wave the processes meet, then every caller calls one of the wave's 8 keys at once:
# each key COPIES times, from two callers of every process, other ones each wave. The
# function inserts its key into the SQLite ledger, whose UNIQUE key refuses a second
# execution with IntegrityError, holds HOLD seconds, and returns the row it wrote. Once
# every process is done, each caller calls again the keys it was told were in progress, as a
# client would. The process prints every call's outcome and the events it saw.
FLEET = (
    PRELUDE
    + """
path, on_in_progress = sys.argv[3], sys.argv[4]
workers, keys, copies = (int(arg) for arg in sys.argv[5:8])
hold = float(sys.argv[8])
per_wave = processes * workers // copies
waves = keys // per_wave
fleet = resilient.idempotent(
    key="request_id", on_in_progress=on_in_progress, lease_ttl=10, backend=backend, name="fleet"
)


def key_of(wave, worker):
    slot = (worker + 5 * me + wave) % workers
    return f"request-{wave * per_wave + slot * per_wave // workers:04d}"


def connect():
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def insert(db, request_id):
    row = db.execute(
        "INSERT INTO ledger (key, pid) VALUES (?, ?)", (request_id, os.getpid())
    ).lastrowid
    return {"key": request_id, "row": row, "pid": os.getpid()}


def refused(outcomes):
    return [key for key, kind, *_ in outcomes if kind == "IdempotencyInProgressError"]


def report(outcomes, retried, crashed):
    fields = {"outcomes": outcomes, "retried": retried, "crashed": crashed, "events": events}
    print(json.dumps(fields))
"""
)

FLEET_THREADS = (
    FLEET
    + """
local = threading.local()


@fleet
def execute(request_id):
    executed = insert(local.db, request_id)
    time.sleep(hold)
    return executed


outcomes, retried, crashed = [], [], []
meetings = itertools.count()
gate = threading.Barrier(workers, action=lambda: meet(f"wave-{next(meetings)}"), timeout=120)


def attempt(key):
    try:
        return [key, "value", execute(key)]
    except Exception as error:
        return failed(key, error)


def work(worker):
    local.db = connect()
    try:
        mine = []
        for wave in range(waves):
            gate.wait()
            mine.append(attempt(key_of(wave, worker)))
        gate.wait()  # every call of every process is over
        retried.extend(attempt(key) for key in refused(mine))
        outcomes.extend(mine)
    except BaseException as error:
        crashed.append(repr(error))
        gate.abort()
    finally:
        local.db.close()


threads = [threading.Thread(target=work, args=(worker,)) for worker in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
report(outcomes, retried, crashed)
"""
)

FLEET_TASKS = (
    FLEET
    + """
db = connect()  # the tasks of the loop take turns with it


@fleet
async def execute(request_id):
    executed = insert(db, request_id)
    await asyncio.sleep(hold)
    return executed


async def attempt(key):
    try:
        return [key, "value", await execute(key)]
    except Exception as error:
        return failed(key, error)


async def main():
    outcomes, retried = [], []
    for wave in range(waves):
        await asyncio.to_thread(meet, f"wave-{wave}")
        calls = (attempt(key_of(wave, worker)) for worker in range(workers))
        outcomes += await asyncio.gather(*calls)
    await asyncio.to_thread(meet, "done")  # every call of every process is over
    again = refused(outcomes)
    for start in range(0, len(again), workers):
        retried += await asyncio.gather(*map(attempt, again[start : start + workers]))
    return outcomes, retried


report(*asyncio.run(main()), [])
db.close()
"""
)


def ledger(path: Path) -> Path:
    """Create the SQLite ledger (WAL mode) in which every execution writes its key, once."""
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    db.execute("CREATE TABLE ledger (key TEXT NOT NULL UNIQUE, pid INTEGER NOT NULL)")
    db.commit()
    db.close()
    return path


def executions(path: Path) -> dict[str, dict[str, Any]]:
    """Return, for each key in the ledger, what its execution returned."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT rowid, key, pid FROM ledger").fetchall()
    finally:
        db.close()
    return {key: {"key": key, "row": row, "pid": pid} for row, key, pid in rows}


def run_fleet(script: str, url: str, path: Path, on_in_progress: str) -> list[dict[str, Any]]:
    """Run the fleet's processes to the end; return what each reported."""
    args = (str(PROCESSES), str(path), on_in_progress, str(WORKERS), str(KEYS), str(COPIES))
    started = time.monotonic()
    with python_processes(script, url, *args, str(HOLD), count=PROCESSES, timeout=300) as results:
        pass
    print(f"{CALLS} calls of {KEYS} keys in {time.monotonic() - started:.1f} s")
    assert [result["crashed"] for result in results] == [[]] * PROCESSES
    return results


def check_fleet(results: list[dict[str, Any]], path: Path, *, on_in_progress: str) -> None:
    """Assert every key executed once and every call got its execution's value, or was told
    it was in progress (only when not waiting); never a conflict, never IntegrityError."""
    executed = executions(path)
    outcomes = outcomes_of(results)
    assert len(outcomes) == CALLS
    requested = collections.Counter(outcome[0] for outcome in outcomes)
    assert set(requested.values()) == {COPIES}
    assert len(requested) == KEYS
    assert sorted(executed) == sorted(requested)  # each key once: the ledger's key is UNIQUE
    kinds = collections.Counter(outcome[1] for outcome in outcomes)
    events = events_of(results)
    print(f"{on_in_progress}: {dict(kinds)}; events {dict(events)}")
    assert kinds["IntegrityError"] == kinds["IdempotencyConflictError"] == 0, kinds
    allowed = {"value"} if on_in_progress == "wait" else {"value", "IdempotencyInProgressError"}
    unexpected = [outcome for outcome in outcomes if outcome[1] not in allowed]
    assert unexpected == [], f"{len(unexpected)} calls got {kinds}, e.g. {unexpected[:5]}"
    wrong = [o for o in outcomes if o[1] == "value" and o[2] != executed[o[0]]]
    assert wrong == [], f"{len(wrong)} calls got another value than the execution's: {wrong[:5]}"
    # every execution was a claim of its key, reported once by the process that ran it
    assert events["idempotency.claimed"] == KEYS
    # the duplicates found the first call running: the calls of a key did overlap
    duplicates = CALLS - KEYS
    assert events["idempotency.in_progress"] >= duplicates // 2, events
    # a client told "in progress" tries again later, and gets the first call's value
    retried = [outcome for result in results for outcome in result["retried"]]
    assert len(retried) == kinds["IdempotencyInProgressError"]
    wrong = [o for o in retried if o[1] != "value" or o[2] != executed[o[0]]]
    assert wrong == [], f"{len(wrong)} calls tried again got {wrong[:5]}"


@pytest.mark.parametrize("on_in_progress", ["wait", "raise"])
def test_sixteen_thousand_calls_from_four_processes_of_threads_execute_each_key_once(
    on_in_progress: str, redis_url: str, tmp_path: Path
) -> None:
    """4 processes x 16 threads call 2,000 keys 8 times each at once: one execution per key;
    each duplicate gets its value (waiting), or its value or IdempotencyInProgressError."""
    path = ledger(tmp_path / "ledger.sqlite")
    results = run_fleet(FLEET_THREADS, redis_url, path, on_in_progress)
    check_fleet(results, path, on_in_progress=on_in_progress)


@pytest.mark.parametrize("on_in_progress", ["wait", "raise"])
def test_sixteen_thousand_calls_from_four_processes_of_tasks_execute_each_key_once(
    on_in_progress: str, redis_url: str, tmp_path: Path
) -> None:
    """4 event loops x 16 tasks call 2,000 keys 8 times each at once: one execution per key;
    each duplicate gets its value (waiting), or its value or IdempotencyInProgressError."""
    path = ledger(tmp_path / "ledger.sqlite")
    results = run_fleet(FLEET_TASKS, redis_url, path, on_in_progress)
    check_fleet(results, path, on_in_progress=on_in_progress)


# --- a process killed mid-execution -------------------------------------------------------------

LEASE_TTL = 2.0  # seconds the killed process's claim outlives it, at most
TAKES = 0.3  # seconds the execution after it lasts
CALLER_PROCESSES, CALLER_THREADS = 4, 4
EVERY = 0.02  # seconds between two calls of one caller

# The function counts its executions in Redis and runs `takes` seconds. As "victim", the
# process calls the key once (and is killed meanwhile). As "callers", each of its threads
# calls the key every `every` seconds, says once (in Redis) that it was told "in progress",
# and stops after `values` values; the process prints every call's [start, end, outcome...],
# on CLOCK_MONOTONIC, which every process of the machine shares.
ORPHANED = (
    PRELUDE
    + """
role, lease_ttl, takes, values, every = sys.argv[3], *map(float, sys.argv[4:8])


@resilient.idempotent(key="request_id", lease_ttl=lease_ttl, backend=backend, name="orphaned")
def execute(request_id):
    execution = control.incr("executions")
    time.sleep(takes)
    return {"execution": execution, "pid": os.getpid()}


calls = []


def keep_calling():
    got, told = 0, False
    deadline = time.monotonic() + 60
    while got < values and time.monotonic() < deadline:
        started = time.monotonic()
        try:
            outcome = ["value", execute("request-1")]
            got += 1
        except Exception as error:
            outcome = failed("request-1", error)[1:]
        calls.append([started, time.monotonic(), *outcome])
        if outcome[0] == "IdempotencyInProgressError" and not told:
            told = control.incr("told in progress")
        time.sleep(every)


if role == "victim":
    print(json.dumps(execute("request-1")))
else:
    threads = [threading.Thread(target=keep_calling) for _ in range(int(sys.argv[8]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"calls": calls, "events": events}))
"""
)


def orphaned(
    role: str, url: str, lease_ttl: float, values: int = 0, takes: float = TAKES
) -> list[str]:
    """Return the arguments of an ORPHANED process of *role*."""
    numbers = (lease_ttl, takes, values, EVERY, CALLER_THREADS)
    return [url, str(CALLER_PROCESSES + (role == "victim")), role, *map(str, numbers)]


def told(control: redis.Redis) -> int:
    """Return how many callers were told the key was in progress."""
    return int(control.get("told in progress") or 0)


def text(reply: bytes | str) -> str:
    """Return a reply of a plain client (bytes) as text."""
    return reply.decode() if isinstance(reply, bytes) else reply


def claimed(server: redis.Redis) -> list[str]:
    """Return the keys of the claims the server holds."""
    return [text(key) for key in server.scan_iter("*:claim")]


def test_a_key_whose_process_was_killed_mid_execution_runs_once_more_after_its_lease(
    redis_url: str, client: redis.Redis
) -> None:
    """SIGKILL mid-execution: others are told "in progress" until its lease runs out; then one
    call executes again, and every later call replays that execution's value."""
    with running(ORPHANED, *orphaned("victim", redis_url, LEASE_TTL, takes=3600)) as victim:
        assert eventually(lambda: client.get("executions") == b"1", 60), "it never ran"
        callers = orphaned("callers", redis_url, LEASE_TTL, values=5)
        with python_processes(ORPHANED, *callers, count=CALLER_PROCESSES, timeout=60) as results:
            every_caller = CALLER_PROCESSES * CALLER_THREADS
            assert eventually(lambda: told(client) == every_caller, 60), (
                "the callers were not all told it was in progress"
            )
            [claim] = claimed(client)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(PATIENCE) == -signal.SIGKILL
            killed = time.monotonic()
            left = client.pttl(claim)
        assert left > 0, "the claim was gone at once"
    expires = killed + left / 1000  # the dead process's claim held the key until then at least
    calls = sorted(call for result in results for call in result["calls"])
    assert client.get("executions") == b"2"  # once in the victim, once after its lease
    before = [call for call in calls if call[1] < expires]
    assert {call[2] for call in before} == {"IdempotencyInProgressError"}
    assert any(call[0] > killed for call in before), "nobody called between the kill and expiry"
    values = [call for call in calls if call[2] == "value"]
    assert values[0][3]["execution"] == 2
    assert all(call[3] == values[0][3] for call in values)  # one execution's value
    assert len(values) == CALLER_PROCESSES * CALLER_THREADS * 5
    stored = min(call[1] for call in values)  # the execution had stored its value by then
    later = [call for call in calls if call[0] > stored]
    assert {call[2] for call in later} == {"value"}
    # a caller polling every EVERY s came soon after the lease ran out
    print(f"the claim outlived the kill by {left} ms; replayed {stored - expires:.3f} s after")
    assert stored - expires <= TAKES + 1.0, stored - expires
    assert events_of(results)["idempotency.claimed"] == 1


STOPPED_LEASE = 0.5  # seconds


def test_an_execution_resumed_past_its_lease_leaves_its_successors_record_alone(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """A process stopped (SIGSTOP) mid-execution until its lease ran out, then resumed: the
    call that executed the key meanwhile stored its value; the resumed execution's late one
    does not replace it, so every later call replays the value already handed out."""

    @idempotent(
        key="request_id", lease_ttl=STOPPED_LEASE, backend=backends(redis_url), name="orphaned"
    )
    def execute(request_id: str) -> dict[str, Any]:
        return {"execution": client.incr("executions"), "pid": os.getpid()}

    victim_args = orphaned("victim", redis_url, STOPPED_LEASE, takes=1.0)
    with running(ORPHANED, *victim_args) as victim:
        assert eventually(lambda: client.get("executions") == b"1", 60), "it never ran"
        victim.send_signal(signal.SIGSTOP)
        assert eventually(lambda: claimed(client) == []), "its lease never ran out"
        successor = execute("request-1")
        victim.send_signal(signal.SIGCONT)
        stdout, stderr = victim.communicate(timeout=PATIENCE)
        assert victim.returncode == 0, stderr
    assert successor == {"execution": 2, "pid": os.getpid()}
    assert json.loads(stdout) == {"execution": 1, "pid": victim.pid}  # it did finish
    assert execute("request-1") == successor  # replayed: the record handed out first


# --- a live execution outlasting its lease ------------------------------------------------------

TRIALS, BATCH = 1_000, 25  # trials, run BATCH at a time, each on a key of its own
SHORT_LEASE = 0.3  # seconds: renewed every 0.1 s, so a process stalled under 0.2 s keeps it
SLOW = 0.8  # seconds an execution lasts: more than two leases
RETRY = 0.05  # seconds a caller told "in progress" waits, on average, before it tries again

# Each process calls every key of a batch once the processes met: even processes from one
# thread per key, odd ones from one task per key. A caller told "in progress" tries again
# after about RETRY seconds, until it gets the value. The function counts its executions of
# each key in Redis and returns when it began. Each process prints, for each of its calls,
# [key, outcome, value, times told "in progress", when its last refused try began].
SLOW_TRIALS = (
    PRELUDE
    + """
import concurrent.futures
import redis.asyncio

trials, batch = int(sys.argv[3]), int(sys.argv[4])
lease_ttl, takes, retry = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
slow = resilient.idempotent(key="request_id", lease_ttl=lease_ttl, backend=backend, name="slow")
counter = None  # the asyncio client of the tasks' loop, made in it


def began(request_id):
    return {"key": request_id, "pid": os.getpid(), "began": time.monotonic()}


@slow
def execute(request_id):
    control.hincrby("executions", request_id, 1)
    value = began(request_id)
    time.sleep(takes)
    return value


@slow
async def execute_async(request_id):
    await counter.hincrby("executions", request_id, 1)  # never block the loop: it renews
    value = began(request_id)
    await asyncio.sleep(takes)
    return value


def keep_trying(key):
    refused, last = 0, None
    while True:
        started = time.monotonic()
        try:
            return [key, "value", execute(key), refused, last]
        except IdempotencyInProgressError:
            refused, last = refused + 1, started
        except Exception as error:
            return [*failed(key, error), refused, last]
        time.sleep(random.uniform(0.5, 1.5) * retry)


async def keep_trying_async(key):
    refused, last = 0, None
    while True:
        started = time.monotonic()
        try:
            return [key, "value", await execute_async(key), refused, last]
        except IdempotencyInProgressError:
            refused, last = refused + 1, started
        except Exception as error:
            return [*failed(key, error), refused, last]
        await asyncio.sleep(random.uniform(0.5, 1.5) * retry)


# Before the trials, each process opens its connections and starts its threads (a burst of
# work that, on a 2-core machine with four processes starting at once, can starve a renewer
# for longer than a 0.3 s lease allows): what is under test is a process in its stride.
warming = resilient.idempotent(key="request_id", backend=backend, name="warm-up")


@warming
def warm_up(request_id):
    control.ping()
    return request_id


@warming
async def awarm_up(request_id):
    await counter.ping()
    return request_id


keys = [f"trial-{number:04d}" for number in range(trials)]
batches = [keys[start : start + batch] for start in range(0, trials, batch)]


async def in_tasks():
    global counter
    counter = redis.asyncio.Redis.from_url(url)
    outcomes = []
    await asyncio.gather(*(awarm_up(f"warm-{me}-{n}") for n in range(batch)))
    events.clear()
    for number, keys in enumerate(batches):
        await asyncio.to_thread(meet, f"batch-{number}")
        outcomes += await asyncio.gather(*map(keep_trying_async, keys))
    return outcomes


def in_threads():
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(batch) as pool:
        list(pool.map(warm_up, [f"warm-{me}-{n}" for n in range(batch)]))
        events.clear()
        for number, keys in enumerate(batches):
            meet(f"batch-{number}")
            outcomes += pool.map(keep_trying, keys)
    return outcomes


outcomes = asyncio.run(in_tasks()) if me % 2 else in_threads()
print(json.dumps({"outcomes": outcomes, "events": events}))
"""
)


def test_a_live_execution_outlasting_its_lease_is_not_taken_over_while_renewed(
    redis_url: str, client: redis.Redis
) -> None:
    """1,000 trials of a 0.8 s execution under a 0.3 s lease, called meanwhile from 3 other
    processes: each executes once, and every caller gets its value.

    Except where a process was stalled past its lease (a loaded 2-core CI machine can pause
    one for 0.2 s): then it says so (`idempotency.lease_lost`), and only then may another
    process execute the key again, as the idempotency page states. Renewal that did not
    work would lose every lease (an execution lasts more than two), not one in a hundred.
    """
    args = (str(PROCESSES), str(TRIALS), str(BATCH), str(SHORT_LEASE), str(SLOW), str(RETRY))
    started = time.monotonic()
    with python_processes(SLOW_TRIALS, redis_url, *args, count=PROCESSES, timeout=300) as results:
        pass
    print(f"{TRIALS} trials in {time.monotonic() - started:.1f} s; {dict(events_of(results))}")
    events = events_of(results)
    lost = events["idempotency.lease_lost"]
    assert lost <= TRIALS // 100, f"{lost} of {TRIALS} leases were lost: renewal fell behind"
    counts = {text(key): int(count) for key, count in client.hgetall("executions").items()}
    assert len(counts) == TRIALS
    again = sum(count - 1 for count in counts.values())
    assert again <= lost, f"{again} executions again with {lost} leases lost: {counts}"
    twice = {key for key, count in counts.items() if count != 1}
    outcomes = outcomes_of(results)
    assert len(outcomes) == PROCESSES * TRIALS
    unexpected = [outcome for outcome in outcomes if outcome[1] != "value"]
    assert unexpected == [], f"{len(unexpected)} callers got {unexpected[:5]}"
    by_key: dict[str, list[Outcome]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_key[outcome[0]].append(outcome)
    once = {key: calls for key, calls in by_key.items() if key not in twice}
    assert all(len({json.dumps(o[2]) for o in calls}) == 1 for calls in once.values())
    # in every trial a caller was refused after the lease it was claimed with had run out:
    # only its renewals kept the key from being taken over
    past_lease = [max((o[4] or 0) for o in calls) - calls[0][2]["began"] for calls in once.values()]
    print(f"the last refusal came {min(past_lease):.3f} to {max(past_lease):.3f} s in")
    assert min(past_lease) > SHORT_LEASE
    assert events["idempotency.claimed"] == TRIALS + again
    assert events["idempotency.taken_over"] <= lost


# --- a key reused with another payload ----------------------------------------------------------

REUSERS, REUSER_THREADS, REUSES = 4, 5, 25  # 500 calls reusing the key, from 4 processes

# The function counts its executions in Redis. As "first", the process calls the key once
# with the cents it is given and, told to "hold", runs until the test pushes to "finish". As
# "reusers", each of its threads calls the key REUSES times, with cents no other call uses.
# Each process prints what its calls got.
CHARGE = (
    PRELUDE
    + """
role, key = sys.argv[3], sys.argv[4]


@resilient.idempotent(key="request_id", lease_ttl=2, backend=backend, name="charge")
def charge(request_id, cents):
    execution = control.incr("executions")
    if role == "first" and sys.argv[6] == "hold":
        control.blpop(["finish"], timeout=60)
    return {"execution": execution, "cents": cents, "pid": os.getpid()}


def reuse(thread, threads, calls):
    for number in range(calls):
        cents = 1_000_000 + ((me * threads + thread) * calls + number)
        try:
            outcomes.append([key, "value", charge(key, cents)])
        except Exception as error:
            outcomes.append(failed(key, error))


outcomes = []
if role == "first":
    outcomes.append([key, "value", charge(key, int(sys.argv[5]))])
else:
    threads, calls = int(sys.argv[5]), int(sys.argv[6])
    workers = [threading.Thread(target=reuse, args=(n, threads, calls)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
print(json.dumps({"outcomes": outcomes, "events": events}))
"""
)


def first_charge(url: str, key: str, *, hold: bool) -> list[str]:
    """Return the arguments of the CHARGE process that calls *key* first, with 500 cents."""
    return [url, str(REUSERS), "first", key, "500", "hold" if hold else "return"]


def reuse_key(url: str, key: str) -> list[dict[str, Any]]:
    """Call *key* 500 times from REUSERS processes with other payloads; return their reports."""
    args = (url, str(REUSERS), "reusers", key, str(REUSER_THREADS), str(REUSES))
    with python_processes(CHARGE, *args, count=REUSERS, timeout=60) as results:
        pass
    return results


def same_payload_charge(url: str, backends: Backends) -> Callable[[str, int], object]:
    """Return `charge` as the CHARGE processes decorate it, in this process (never to run)."""

    @idempotent(key="request_id", lease_ttl=2, backend=backends(url), name="charge")
    def charge(request_id: str, cents: int) -> object:
        raise AssertionError(f"{request_id} executed again in the test")

    return charge


def check_refused(results: list[dict[str, Any]]) -> None:
    """Assert each of the 500 calls of the reusers was refused as a conflict."""
    outcomes = outcomes_of(results)
    assert len(outcomes) == REUSERS * REUSER_THREADS * REUSES
    accepted = [outcome for outcome in outcomes if outcome[1] != "IdempotencyConflictError"]
    assert accepted == [], f"{len(accepted)} of {len(outcomes)} were not refused: {accepted}"
    assert events_of(results)["idempotency.conflicted"] == len(outcomes)


def test_a_key_reused_with_other_payloads_after_its_call_is_refused_every_time(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """500 calls from 4 processes reuse a stored key with other payloads: 500 conflicts, no
    execution; the same payload still replays the first call's value."""
    first = first_charge(redis_url, "order-1", hold=False)
    with python_processes(CHARGE, *first, count=1) as results:
        pass
    [[_, _, value]] = outcomes_of(results)
    assert value["execution"] == 1
    check_refused(reuse_key(redis_url, "order-1"))
    assert client.get("executions") == b"1"
    assert same_payload_charge(redis_url, backends)("order-1", 500) == value


def test_a_key_reused_with_other_payloads_while_its_call_runs_is_refused_every_time(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """500 calls from 4 processes reuse a key with other payloads while its first call runs:
    500 conflicts (not "in progress"), no execution; the first call's value is stored."""
    charge = same_payload_charge(redis_url, backends)
    with running(CHARGE, *first_charge(redis_url, "order-2", hold=True)) as first:
        assert eventually(lambda: client.get("executions") == b"1", 60), "it never ran"
        results = reuse_key(redis_url, "order-2")
        with pytest.raises(IdempotencyInProgressError):  # the same payload is a duplicate
            charge("order-2", 500)
        ran_meanwhile = first.poll() is None
        client.rpush("finish", 1)
        stdout, stderr = first.communicate(timeout=60)
        assert first.returncode == 0, stderr
    [report] = [json.loads(stdout)]
    assert ran_meanwhile, "the first call ended before the reuses were refused"
    assert report["events"].get("idempotency.lease_lost", 0) == 0, report["events"]
    check_refused(results)
    [[_, _, value]] = report["outcomes"]
    assert value == {"execution": 1, "cents": 500, "pid": first.pid}
    assert client.get("executions") == b"1"
    assert charge("order-2", 500) == value
    with pytest.raises(IdempotencyConflictError):
        charge("order-2", 501)


# --- many live executions renewed by one busy process -------------------------------------------

# One renewer serves every lease of a process, in a process that has other work to do. It sends
# renewals one after another, so it keeps up while leases x round trip (under the load) stays
# well below lease_ttl / 3: 20 leases renewed every 0.5 s do, in a loop working 3 ms a turn or
# beside a thread holding the GIL. (45 renewed every 0.1 s did not: a third were executed twice.
# docs/idempotency.md states the bound; renewing due leases together would lift it.)
MANY = 20  # executions at once in one process (and as many duplicates)
BUSY_LEASE, BUSY_TAKES = 1.5, 3.6  # seconds: renewed every 0.5 s, for more than two leases
TURN = 0.003  # seconds of CPU the rest of the app uses per turn of the event loop


def spin(until: threading.Event, seconds: float | None = None) -> None:
    """Use the CPU in pure Python (holding the GIL) until *until* is set, or for *seconds*."""
    deadline = None if seconds is None else time.perf_counter() + seconds
    while not until.is_set() and (deadline is None or time.perf_counter() < deadline):
        pass


def outcome_of(call: Callable[[str], object], key: str) -> str:
    """Call *call* with *key*; return "value", or the name of what it raised."""
    try:
        call(key)
    except Exception as error:
        return type(error).__name__
    return "value"


async def aoutcome_of(call: Callable[[str], Awaitable[object]], key: str) -> str:
    """Await *call* with *key*; return "value", or the name of what it raised."""
    try:
        await call(key)
    except Exception as error:
        return type(error).__name__
    return "value"


def in_busy_threads(pay: Callable[[str], object], keys: list[str]) -> list[str]:
    """Run *pay* on every key at once beside a thread busy in pure Python; once two leases
    have passed, call every key again; return what those second calls got."""
    done = threading.Event()
    app = threading.Thread(target=spin, args=(done,))
    app.start()
    try:
        with ThreadPoolExecutor(2 * len(keys)) as pool:
            firsts = [pool.submit(pay, key) for key in keys]
            pause(2 * BUSY_LEASE)  # past the lease each was claimed with
            duplicates = list(pool.map(functools.partial(outcome_of, pay), keys))
            for first in firsts:
                first.result()
    finally:
        done.set()
        app.join()
    return duplicates


async def in_busy_loop(pay: Callable[[str], Awaitable[object]], keys: list[str]) -> list[str]:
    """Run *pay* on every key at once in an event loop that works TURN s a turn; once two
    leases have passed, call every key again; return what those second calls got."""
    done = threading.Event()

    async def app() -> None:
        while not done.is_set():
            spin(done, TURN)
            await asyncio.sleep(0)

    working = asyncio.create_task(app())
    try:
        firsts = asyncio.gather(*map(pay, keys))
        await asyncio.sleep(2 * BUSY_LEASE)  # past the lease each was claimed with
        duplicates = await asyncio.gather(*(aoutcome_of(pay, key) for key in keys))
        await firsts
    finally:
        done.set()
        await working
    return duplicates


@pytest.mark.parametrize("holders", ["threads", "tasks"])
def test_many_live_executions_in_one_busy_process_all_keep_their_leases(
    holders: str, redis_url: str, backends: Backends, log: EventLog
) -> None:
    """20 executions at once in one process that is busy too (a thread in pure Python, or
    3 ms of work a turn of the event loop, as an app under load): each outlasts its 1.5 s
    lease by its renewals, so a duplicate 3 s in is refused, never executed again."""
    backend = backends(redis_url)
    executed: collections.Counter[str] = collections.Counter()
    policy = idempotent(key="request_id", lease_ttl=BUSY_LEASE, backend=backend, name="busy")
    keys = [f"request-{number}" for number in range(MANY)]

    @policy
    def pay(request_id: str) -> str:
        executed[request_id] += 1
        pause(BUSY_TAKES)
        return request_id

    @policy
    async def apay(request_id: str) -> str:
        executed[request_id] += 1
        await asyncio.sleep(BUSY_TAKES)
        return request_id

    if holders == "threads":
        duplicates = in_busy_threads(pay, keys)
    else:
        duplicates = asyncio.run(in_busy_loop(apay, keys))
    lost = [round(event.held, 3) for event in log.of(IdempotencyLeaseLost)]
    twice = sorted(key for key, count in executed.items() if count > 1)
    assert twice == [], (
        f"{len(twice)} of {MANY} live executions were executed again; {len(lost)} leases "
        f"were found lost after {sorted(lost)} s"
    )
    assert duplicates == ["IdempotencyInProgressError"] * MANY


def test_a_hundred_and_fifty_calls_at_once_in_one_event_loop_all_execute(
    redis_url: str, backends: Backends
) -> None:
    """150 calls of 150 keys at once in one event loop, Redis healthy: each executes once;
    none is refused with BackendUnavailableError for want of a free connection."""
    executed: list[str] = []

    @idempotent(key="request_id", backend=backends(redis_url), name="crowd")
    async def pay(request_id: str) -> str:
        executed.append(request_id)
        await asyncio.sleep(0.1)
        return request_id

    async def crowd() -> list[str]:
        return await asyncio.gather(*(aoutcome_of(pay, f"request-{n}") for n in range(150)))

    got = collections.Counter(asyncio.run(crowd()))
    assert got == {"value": 150}
    assert len(executed) == 150


# --- Redis out of reach at claim time -----------------------------------------------------------

SOCKET_TIMEOUT = 0.5  # seconds a call waits for Redis's reply
DOWN_KEYS = [f"payment-{number}" for number in range(16)]  # called from threads, then tasks


class Payments:
    """`pay` and `apay`, idempotent on one backend, recording each execution in `executed`."""

    def __init__(self, backend: object, **options: Any) -> None:
        self.executed: list[str] = []
        policy = idempotent(key="request_id", backend=backend, name="pay", **options)
        self.pay = policy(self._pay)
        self.apay = policy(self._apay)

    def _pay(self, request_id: str) -> str:
        self.executed.append(request_id)
        return f"paid {request_id}"

    async def _apay(self, request_id: str) -> str:
        self.executed.append(request_id)
        return f"paid {request_id}"

    def call_all(self, keys: list[str]) -> list[str]:
        """Call `pay` on each key from 8 threads, then `apay` from as many tasks; return what
        each call got ("value", or the name of what it raised), threads first."""
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(functools.partial(outcome_of, self.pay), keys))

        async def in_tasks() -> list[str]:
            return await asyncio.gather(*(aoutcome_of(self.apay, key) for key in keys))

        return got + asyncio.run(in_tasks())


def test_calls_while_redis_is_down_raise_backend_unavailable_and_execute_nothing(
    fresh_redis: RedisServer, backends: Backends
) -> None:
    """Redis killed: 32 calls from threads and tasks raise BackendUnavailableError and none
    executes (no claim, no execution); once it is back, a key executes once and replays."""
    payments = Payments(backends(fresh_redis.url, socket_timeout=SOCKET_TIMEOUT))
    assert payments.pay("warm-up") == "paid warm-up"  # connected before the server dies
    fresh_redis.kill()
    got = payments.call_all(DOWN_KEYS)
    assert got == ["BackendUnavailableError"] * 2 * len(DOWN_KEYS)
    assert payments.executed == ["warm-up"]
    fresh_redis.restart()
    assert payments.pay("payment-0") == payments.pay("payment-0") == "paid payment-0"
    assert payments.executed == ["warm-up", "payment-0"]


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
def test_a_cut_link_to_redis_at_claim_time_executes_nothing_and_leaves_no_claim(
    fault: str,
    redis_server: RedisServer,
    redis_url: str,
    fault_proxy: FaultProxyFactory,
    backends: Backends,
) -> None:
    """Redis unanswered (blackhole) or connections reset: 16 calls raise
    BackendUnavailableError within their timeouts and execute nothing; healed, each key
    executes once at its first call."""
    proxy = fault_proxy(redis_server.port)
    payments = Payments(backends(proxy.url, socket_timeout=SOCKET_TIMEOUT), lease_ttl=60)
    assert payments.pay("warm-up") == "paid warm-up"  # connected through the proxy
    keys = DOWN_KEYS[:8]
    getattr(proxy, fault)()
    started = time.monotonic()
    got = payments.call_all(keys)
    took = time.monotonic() - started
    proxy.heal()
    assert got == ["BackendUnavailableError"] * 2 * len(keys)
    assert payments.executed == ["warm-up"]
    # the claim, then its release, wait out one socket timeout each (threads, then tasks)
    assert took <= 2 * 2 * SOCKET_TIMEOUT + 1, took
    assert payments.call_all(keys) == ["value"] * 2 * len(keys)  # executed, then replayed
    assert sorted(payments.executed) == sorted(["warm-up", *keys])


@pytest.mark.parametrize("in_loop", [False, True], ids=["sync", "async"])
def test_a_claim_whose_reply_was_lost_is_given_back_and_nothing_executed(
    in_loop: bool,
    redis_server: RedisServer,
    client: redis.Redis,
    fault_proxy: FaultProxyFactory,
    backends: Backends,
) -> None:
    """The claim ran on Redis but its reply was lost (the link healed meanwhile): the call
    raises BackendUnavailableError, executes nothing, and gives the claim back at once, so
    the next call executes rather than being told "in progress" for the lease's 60 s."""
    proxy = fault_proxy(redis_server.port)
    payments = Payments(backends(proxy.url, socket_timeout=SOCKET_TIMEOUT), lease_ttl=60)

    def lose_the_reply() -> None:  # once the call claimed the key on Redis
        assert eventually(lambda: bool(claimed(client)))
        pause(0.1)  # Redis wrote its reply: let the proxy drop it before healing
        proxy.heal()

    async def in_a_task() -> str:
        await payments.apay("warm-up")  # this loop's connection, made through the proxy
        proxy.drop_replies()
        call = asyncio.ensure_future(aoutcome_of(payments.apay, "payment-1"))
        await asyncio.to_thread(lose_the_reply)
        return await call

    if in_loop:
        got = asyncio.run(in_a_task())
    else:
        payments.pay("warm-up")
        proxy.drop_replies()
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(outcome_of, payments.pay, "payment-1")
            lose_the_reply()
            got = call.result(PATIENCE)
    assert got == "BackendUnavailableError"
    assert claimed(client) == []
    assert payments.pay("payment-1") == payments.pay("payment-1") == "paid payment-1"
    assert payments.executed == ["warm-up", "payment-1"]


def test_a_claim_whose_reply_and_release_were_lost_holds_its_key_for_its_lease_only(
    redis_server: RedisServer,
    client: redis.Redis,
    fault_proxy: FaultProxyFactory,
    backends: Backends,
) -> None:
    """Replies lost for the whole call, its release's too: BackendUnavailableError, nothing
    executed; the key then stays "in progress" (never executed twice) until the claim's
    lease runs out, and executes once after."""
    proxy = fault_proxy(redis_server.port)
    payments = Payments(backends(proxy.url, socket_timeout=SOCKET_TIMEOUT), lease_ttl=3)
    payments.pay("warm-up")
    proxy.drop_replies()
    with pytest.raises(BackendUnavailableError):
        payments.pay("payment-1")
    proxy.heal()
    [claim] = claimed(client)
    assert 0 < client.pttl(claim) <= 3000
    with pytest.raises(IdempotencyInProgressError):
        payments.pay("payment-1")
    assert payments.executed == ["warm-up"]
    assert eventually(lambda: claimed(client) == [])
    assert payments.pay("payment-1") == "paid payment-1"
    assert payments.executed == ["warm-up", "payment-1"]


def test_fail_open_runs_each_call_while_redis_is_down_and_reports_it_bypassed(
    fresh_redis: RedisServer, backends: Backends, log: EventLog
) -> None:
    """fail_open=True with Redis killed: each of 32 calls runs unguarded, and each is reported
    as IdempotencyBypassed (with the failure of its claim as BackendFailed)."""
    payments = Payments(backends(fresh_redis.url, socket_timeout=SOCKET_TIMEOUT), fail_open=True)
    assert payments.pay("warm-up") == "paid warm-up"
    fresh_redis.kill()
    got = payments.call_all(DOWN_KEYS)
    assert got == ["value"] * 2 * len(DOWN_KEYS)
    assert sorted(payments.executed) == sorted(["warm-up", *DOWN_KEYS, *DOWN_KEYS])
    assert len(log.of(IdempotencyBypassed)) == 2 * len(DOWN_KEYS)
    failed = [event for event in log.of(BackendFailed) if event.operation == "get"]
    assert len(failed) == 2 * len(DOWN_KEYS)
    assert {event.policy for event in log.of(IdempotencyBypassed)} == {"pay"}
