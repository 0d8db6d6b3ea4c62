"""@bulkhead(shared=True) on a real Redis shared by real processes: the bound, leases, failure."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from cache_support import PATIENCE, EventLog, eventually, python_processes, run, running
from redis_fixtures import Backends
from redis_infra import RedisServer, commands_sent

import resilient
from resilient import bulkhead
from resilient.events import LockLost
from resilient.exceptions import BackendUnavailableError, BulkheadFullError

PROCESSES, WORKERS, ROUNDS, BOUND = 4, 8, 20, 4

# Each of WORKERS threads (or tasks) of a process calls a shared bulkhead ROUNDS times. A call
# counts itself in and out of a Redis counter, which nothing of the library touches, and
# records the count it found on entering: how many calls of the fleet were running at once.
FLEET = """
import asyncio, json, sys, threading, time
import redis, redis.asyncio
import resilient
from resilient.backends.redis import RedisBackend

url, mode, workers, rounds, bound = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
# a process starved of CPU by its rivals on a small machine must not count as Redis being
# unreachable: what is under test is the bound, not latency
backend = RedisBackend.from_url(url, socket_timeout=30)
options = dict(max_concurrent=bound, max_waiting=1000, shared=True, backend=backend, name="fleet")
seen, errors = [], []

@resilient.bulkhead(**options)
def work(control):
    seen.append(control.incr("running"))
    time.sleep(0.002)
    control.decr("running")

@resilient.bulkhead(**options)
async def awork(control):
    seen.append(await control.incr("running"))
    await asyncio.sleep(0.002)
    await control.decr("running")

def in_thread():
    control = redis.Redis.from_url(url, socket_timeout=30)
    try:
        for _ in range(rounds):
            work(control)
    except Exception as error:
        errors.append(repr(error))

async def in_task(control):
    try:
        for _ in range(rounds):
            await awork(control)
    except Exception as error:
        errors.append(repr(error))

async def tasks():
    control = redis.asyncio.Redis.from_url(url, socket_timeout=30)
    await asyncio.gather(*(in_task(control) for _ in range(workers)))
    await control.aclose()

if mode == "threads":
    threads = [threading.Thread(target=in_thread) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
else:
    asyncio.run(tasks())
print(json.dumps({"seen": seen, "errors": errors}))
"""


@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_four_processes_never_run_more_than_the_bound_at_once(
    mode: str, redis_url: str, client: redis.Redis
) -> None:
    """4 processes x 8 threads (or tasks) x 20 calls: never more than 4 running in the fleet."""
    args = (redis_url, mode, str(WORKERS), str(ROUNDS), str(BOUND))
    with python_processes(FLEET, *args, count=PROCESSES, timeout=120) as results:
        pass
    assert [result["errors"] for result in results] == [[]] * PROCESSES
    seen = [count for result in results for count in result["seen"]]
    assert len(seen) == PROCESSES * WORKERS * ROUNDS
    assert max(seen) == BOUND  # reached, never exceeded
    assert client.get("running") == b"0"
    (slots,) = client.keys("*bulkhead*")
    assert client.zcount(slots, 0, "+inf") == 0  # every slot given back (a lease scores > 0)
    assert client.pttl(slots) > 0  # the releases' receipts (scored < 0) go with the key


# --- a process killed holding a slot -----------------------------------------------------------

LEASE_TTL = 0.6  # seconds a killed process's slot outlives it, at most
SLOTS = "resilient:bulkhead:{orphaned}:slots"  # where the bulkhead "orphaned" keeps its slots

VICTIM = """
import sys, time
import redis
import resilient
from resilient.backends.redis import RedisBackend

url, lease_ttl = sys.argv[1], float(sys.argv[2])
backend = RedisBackend.from_url(url)
control = redis.Redis.from_url(url)

@resilient.bulkhead(
    max_concurrent=1, shared=True, backend=backend, lease_ttl=lease_ttl, name="orphaned"
)
def hold():
    control.set("inside", "1")
    time.sleep(3600)

hold()
"""


def lease_left(client: redis.Redis) -> float:
    """Seconds until the first lease of SLOTS runs out, on the server's clock."""
    [(_, expires)] = client.zrange(SLOTS, 0, 0, withscores=True)
    seconds, micros = client.time()
    return float(expires) / 1000 - (seconds + micros / 1e6)


def test_a_killed_holders_slot_frees_within_its_lease_and_not_before(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """A process SIGKILLed in a call keeps its slot while renewed, then frees it within
    lease_ttl: a waiter there is admitted after the lease runs out, and no sooner."""
    backend = backends(redis_url)
    started: list[float] = []

    @bulkhead(max_concurrent=1, max_waiting=1, shared=True, backend=backend, name="orphaned")
    def call() -> None:
        started.append(time.monotonic())

    with running(VICTIM, redis_url, str(LEASE_TTL)) as victim:
        assert eventually(lambda: client.get("inside") == b"1", 30), "it never ran"
        # renewed: the slot stays taken for twice its lease_ttl and more
        with pytest.raises(BulkheadFullError), resilient.deadline(2 * LEASE_TTL):
            call()
        assert started == []
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(PATIENCE) == -signal.SIGKILL
        killed = time.monotonic()
        left = lease_left(client)
    assert 0 < left <= LEASE_TTL
    with resilient.deadline(PATIENCE):
        call()
    [admitted] = started
    assert left - 0.05 <= admitted - killed <= LEASE_TTL + 0.5, (left, admitted - killed)


# --- leases and round trips ----------------------------------------------------------------------


def test_a_slot_gone_while_its_call_runs_is_reported_lost(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """The slots deleted under a running call: its renewal finds its lease gone (LockLost), and
    the call still returns its value."""
    log = EventLog()
    resilient.configure(observers=[log])
    inside, release = threading.Event(), threading.Event()

    @bulkhead(shared=True, backend=backends(redis_url), lease_ttl=0.3, name="orphaned")
    def hold() -> str:
        inside.set()
        release.wait(PATIENCE)
        return "done"

    results: list[str] = []
    holder = threading.Thread(target=lambda: results.append(hold()))
    holder.start()
    try:
        assert inside.wait(PATIENCE)
        assert client.zcard(SLOTS) == 1
        client.delete(SLOTS)
        log.wait_for(LockLost)
    finally:
        release.set()
        holder.join(PATIENCE)
        resilient.reset_defaults()
    assert results == ["done"]
    assert [event.policy for event in log.of(LockLost)] == ["orphaned"]


def test_a_call_finding_a_free_slot_costs_two_commands(redis_url: str, backends: Backends) -> None:
    """An uncontended call sends one EVALSHA to take its slot and one to give it back."""

    @bulkhead(shared=True, backend=backends(redis_url))
    def work() -> int:
        return 1

    work()  # loads the script
    with commands_sent(redis_url) as sent:
        assert work() == 1
    assert sent == ["EVALSHA", "EVALSHA"]


# --- Redis down ----------------------------------------------------------------------------------


def test_calls_while_redis_is_down_fail_closed_and_run_nothing(
    fresh_redis: RedisServer, backends: Backends
) -> None:
    """Redis killed: sync and async calls raise BackendUnavailableError and none runs; once it
    is back, calls run again."""
    backend = backends(fresh_redis.url, socket_timeout=0.5)
    ran: list[str] = []

    @bulkhead(max_concurrent=2, max_waiting=4, shared=True, backend=backend, name="down")
    def work(tag: str) -> str:
        ran.append(tag)
        return tag

    @bulkhead(max_concurrent=2, max_waiting=4, shared=True, backend=backend, name="down")
    async def awork(tag: str) -> str:
        ran.append(tag)
        return tag

    assert work("warm-up") == "warm-up"
    fresh_redis.kill()
    with pytest.raises(BackendUnavailableError) as sync_error:
        work("sync")
    with pytest.raises(BackendUnavailableError) as async_error:
        run(awork("async"))
    for error in (sync_error.value, async_error.value):
        assert error.operation == "acquire_slot"
        assert isinstance(error.__cause__, redis.exceptions.ConnectionError)
    assert ran == ["warm-up"]
    fresh_redis.restart()
    assert work("back") == "back"
    assert run(awork("aback")) == "aback"
    assert ran == ["warm-up", "back", "aback"]
